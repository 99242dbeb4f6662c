"""``mpq search`` and ``POST /v1/jobs`` take one job spec: same names, defaults, validation.

Both are read from :class:`search.JobSpec`: the command line through the flag table
(``commands.spec_flags.SPEC_FLAGS``), the API through its body schema
(``service.schemas.JobCreate``). This test holds the two against each other.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

import pytest
from pydantic import BaseModel

from commands.spec_flags import SPEC_FLAGS, add_spec_flags, in_flag_words, spec_from_args
from engine.errors import InvalidPlanError
from search import JobSpec
from service.schemas import JobCreate

IDS = {"model_id": 1, "dataset_id": 1}


def _parse(argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mpq search")
    add_spec_flags(parser)
    return parser.parse_args(shlex.split(argv))


def _api_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every leaf of the body schema, as a path of field names."""
    paths: set[tuple[str, ...]] = set()
    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            paths |= _api_paths(sub, (*prefix, name))
        else:
            paths.add((*prefix, name))
    return paths


def test_every_option_has_a_flag_and_an_api_field_of_the_same_name() -> None:
    api = _api_paths(JobCreate) - {("model_id",), ("model",), ("dataset_id",)}
    cli = {row.path for row in SPEC_FLAGS}
    assert cli == api, f"only on the CLI: {cli - api}; only in the API: {api - cli}"
    for row in SPEC_FLAGS:  # the flag is the field's name (--pin, repeated, for pins)
        name = "--" + row.path[-1].replace("_", "-")
        assert row.flag in (name, name.removesuffix("s")), row


def test_the_defaults_are_the_specs_on_both_doors() -> None:
    assert JobCreate(**IDS).spec() == spec_from_args(_parse("")) == JobSpec()


def test_the_same_request_gives_the_same_spec() -> None:
    argv = (
        "--metric agreement --max-drop-rel 0.02 --min-ratio 6 --space int2,int4,cb16 "
        "--rounding gptq --activation a16 --pin 'head*=int8' --trials 9 --timeout-s 60 "
        "--seed 5 --sampler nsga2 --parallelism 3"
    )
    body: dict[str, Any] = {
        **IDS,
        "metric": "agreement",
        "targets": {"max_drop_rel": 0.02, "min_ratio": 6},
        "space": ["int2", "int4", "cb16"],
        "rounding": ["gptq"],
        "activation": ["a16"],
        "pins": {"head*": "int8"},
        "budget": {"trials": 9, "timeout_s": 60},
        "seed": 5,
        "sampler": "nsga2",
        "parallelism": 3,
    }
    assert spec_from_args(_parse(argv)) == JobCreate(**body).spec()


@pytest.mark.parametrize(
    ("argv", "body"),
    [
        ("--metric bleu", {"metric": "bleu"}),
        ("--space int9", {"space": ["int9"]}),
        ("--max-drop 0.01 --min-metric 0.9", {"targets": {"max_drop": 0.01, "min_metric": 0.9}}),
        ("--max-bytes '8 parsecs'", {"targets": {"max_bytes": "8 parsecs"}}),
        ("--sampler grid", {"sampler": "grid"}),
        ("--rounding floor", {"rounding": ["floor"]}),
        ("--pin 'fc*=int5x'", {"pins": {"fc*": "int5x"}}),
        ("--metric sqnr --max-drop 1", {"metric": "sqnr", "targets": {"max_drop": 1}}),
        ("--max-drop -0.1", {"targets": {"max_drop": -0.1}}),
        ("--max-drop-rel 1.5", {"targets": {"max_drop_rel": 1.5}}),
        ("--max-bytes 0", {"targets": {"max_bytes": 0}}),
        ("--min-ratio 1", {"targets": {"min_ratio": 1}}),
        ("--trials 0", {"budget": {"trials": 0}}),
        ("--timeout-s 0", {"budget": {"timeout_s": 0}}),
        ("--seed -1", {"seed": -1}),
        ("--parallelism 0", {"parallelism": 0}),
    ],
)
def test_a_bad_request_is_refused_with_the_same_message(argv: str, body: dict[str, Any]) -> None:
    """The same error on both doors, each naming options in its own words."""
    with pytest.raises(InvalidPlanError) as cli:
        spec_from_args(_parse(argv))
    with pytest.raises(InvalidPlanError) as api:
        JobCreate(**IDS, **body).spec()
    assert str(cli.value) == in_flag_words(str(api.value))
    flag = argv.split()[0]
    api_name = next(".".join(row.path) for row in SPEC_FLAGS if row.flag == flag)
    if flag in str(cli.value):  # the option is named: as the API names it, and as a flag
        assert f"`{api_name}`" in str(api.value) and "`" not in str(cli.value)
        assert "--" not in str(api.value)
