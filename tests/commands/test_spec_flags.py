"""``mpq search``'s job spec flags: one per spec option, the spec's defaults and validation."""

from __future__ import annotations

import argparse
import shlex

import pytest

from commands.spec_flags import SPEC_FLAGS, add_spec_flags, spec_document, spec_from_args
from engine.errors import InvalidPlanError
from search import JobSpec, Targets


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mpq search")
    add_spec_flags(parser)
    return parser.parse_args(argv)


def test_every_spec_option_has_one_flag() -> None:
    options = [row.option for row in SPEC_FLAGS]
    assert sorted(options) == sorted(JobSpec.option_names())
    assert len(set(options)) == len(options)
    flags = [f for row in SPEC_FLAGS for f in (row.flag, *row.aliases)]
    assert len(set(flags)) == len(flags)
    defaults = JobSpec().to_json()
    for row in SPEC_FLAGS:  # each path names a place in the spec's JSON
        node = defaults
        for name in row.path:
            assert name in node, (row.option, row.path)
            node = node[name]


def test_no_flags_give_the_default_spec() -> None:
    args = _parse()
    assert spec_document(args) == {}
    assert spec_from_args(args) == JobSpec()


def test_every_flag_gives_the_spec_of_the_equivalent_api_body() -> None:
    args = _parse(
        *shlex.split(
            "--metric cosine --min-metric 0.99 --max-bytes 8KB --space 'int4, cb16,' "
            "--rounding nearest --activation a8,a16 --pin 'classifier*=int8' "
            "--pin 'embed*=fp16/nearest/a16' --trials 7 --timeout-s 30 --seed 3 "
            "--sampler random --parallelism 2 --holdout 0.3"
        )
    )
    body = {
        "metric": "cosine",
        "targets": {"min_metric": 0.99, "max_bytes": "8KB"},
        "space": ["int4", "cb16"],
        "rounding": ["nearest"],
        "activation": ["a8", "a16"],
        "pins": {"classifier*": "int8", "embed*": "fp16/nearest/a16"},
        "budget": {"trials": 7, "timeout_s": 30},
        "seed": 3,
        "sampler": "random",
        "parallelism": 2,
        "holdout": 0.3,
    }
    spec = spec_from_args(args)
    assert spec == JobSpec.from_json(body)
    assert spec.targets == Targets(min_metric=0.99, max_bytes=8000)
    assert spec.pins == (("classifier*", "int8"), ("embed*", "fp16/nearest/a16"))
    assert (spec.trials, spec.timeout_s, spec.parallelism, spec.holdout) == (7, 30.0, 2, 0.3)


@pytest.mark.parametrize(
    ("argv", "target"),
    [
        (("--max-drop", "0.02"), Targets(max_drop=0.02)),
        (("--max-drop-rel", "0.05"), Targets(max_drop_rel=0.05)),
        (("--min-ratio", "4"), Targets(min_ratio=4.0)),
    ],
)
def test_each_target_flag_sets_its_target(argv: tuple[str, ...], target: Targets) -> None:
    assert spec_from_args(_parse(*argv)).targets == target


def test_max_metric_flag() -> None:
    spec = spec_from_args(_parse("--metric", "kl", "--max-metric", "0.01"))
    assert spec == JobSpec(metric="kl", targets=Targets(max_metric=0.01))


def test_the_old_spellings_still_work() -> None:
    spec = spec_from_args(_parse("--workers", "3", "--timeout", "12.5"))
    assert spec == JobSpec(parallelism=3, timeout_s=12.5)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--max-drop", "0.01", "--min-metric", "0.9"), "at most one of"),
        (("--max-bytes", "8KB", "--min-ratio", "4"), "at most one of"),
        (("--metric", "sqnr", "--max-drop", "0.1"), "give --min-metric"),
        (
            ("--metric", "kl", "--max-drop", "0.1"),
            "--max-drop means nothing for it: give --max-metric",
        ),
        (("--max-metric", "0.1"), "accuracy is higher-is-better"),
        (("--metric", "f1"), "--metric 'f1'"),
        (("--sampler", "grid"), "--sampler must be one of"),
        (("--max-bytes", "8 parsecs"), "8 parsecs"),
        (("--pin", "classifier"), "PATTERN=FORMAT"),
        (("--trials", "0"), "--trials must be between 1 and"),
    ],
)
def test_invalid_flags_raise_the_specs_error(argv: tuple[str, ...], words: str) -> None:
    with pytest.raises(InvalidPlanError, match=words):
        spec_from_args(_parse(*argv))


def test_a_flag_that_is_not_a_number_is_an_argparse_error() -> None:
    with pytest.raises(SystemExit) as exc:
        _parse("--trials", "many")
    assert exc.value.code == 2


def test_help_shows_the_specs_defaults() -> None:
    parser = argparse.ArgumentParser(prog="mpq search")
    add_spec_flags(parser)
    text = " ".join(parser.format_help().split())
    assert "(default: 100)" in text and "(default: nearest,gptq)" in text
    assert "--timeout-s TIMEOUT_S, --timeout TIMEOUT_S" in text
