"""JobSpec bounds: every value a client can send is checked here, for the API and the CLI."""

from __future__ import annotations

import math
from typing import Any

import pytest

from engine.errors import InvalidPlanError
from search import JobSpec, Targets
from search._spec import MAX_ENTRIES, MAX_SEED, max_ratio
from search._targets import METRIC_RANGES, parse_bytes


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"seed": MAX_SEED + 1}, "`seed` must be between 0 and 4294967295"),
        ({"seed": 2**64}, "`seed`"),
        ({"seed": True}, "`seed` must be an integer"),
        ({"budget": {"trials": 10**7}}, "`budget.trials` must be between 1 and 1000000"),
        ({"parallelism": 10**6}, "`parallelism` must be between 1 and 1024"),
        ({"budget": {"timeout_s": 1e300}}, "at most 2592000"),
        ({"budget": {"timeout_s": 10**400}}, "`budget.timeout_s` must be a finite number"),
        ({"holdout": 10**400}, "`holdout` must be a finite number"),
        ({"targets": {"max_drop": 1.5}}, "cannot drop by more than 1"),
        ({"targets": {"min_metric": 1.01}}, "accuracy is always [0, 1]"),
        ({"targets": {"min_metric": -0.01}}, "`targets.min_metric` is -0.01"),
        ({"metric": "top5", "targets": {"min_metric": 2}}, "top5 is always [0, 1]"),
        ({"metric": "cosine", "targets": {"min_metric": -1.5}}, "cosine is always [-1, 1]"),
        ({"metric": "cosine", "targets": {"max_drop": 2.5}}, "more than 2"),
        ({"metric": "nmse", "targets": {"max_metric": -0.1}}, "nmse is always >= 0"),
        ({"targets": {"max_bytes": 2**63}}, "below 2^63"),
        ({"targets": {"max_bytes": "9" * 30 + "GB"}}, "below 2^63 bytes"),
        ({"targets": {"max_bytes": "1" * 100}}, "is not understood"),
        ({"targets": {"min_ratio": 17}}, "more than 16x"),
        ({"space": ["cb4", "int8"], "targets": {"min_ratio": 16.5}}, "more than 16x"),
        ({"space": ["int8"], "pins": {"fc": "cb2"}, "targets": {"min_ratio": 33}}, "32x"),
        ({"space": ["int4/nearest/a8"]}, "`space` entry 'int4/nearest/a8'"),
        ({"activation": ["a8/x"]}, "`activation` entry"),
        ({"space": [""]}, "`space` entry ''"),
        ({"pins": {"a=b": "int8"}}, "without '='"),
        ({"pins": {"x" * 300: "int8"}}, "at most 256 characters"),
        ({"pins": {f"l{i}": "int8" for i in range(300)}}, "at most 256"),
        ({"metric": "f" * 500}, "..."),
    ],
)
def test_out_of_range_values_are_refused(doc: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidPlanError) as info:
        JobSpec.from_json(doc)
    assert words in str(info.value), str(info.value)
    assert len(str(info.value)) < 400  # a message never echoes a whole body


def test_the_bounds_themselves_are_accepted() -> None:
    spec = JobSpec.from_json(
        {
            "seed": MAX_SEED,
            "targets": {"max_drop": 1.0, "min_ratio": 16.0},
            "budget": {"trials": 1_000_000, "timeout_s": 2_592_000},
            "parallelism": 1024,
        }
    )
    assert spec.seed == MAX_SEED and spec.targets.min_ratio == 16
    JobSpec(metric="cosine", targets=Targets(min_metric=-1.0))
    JobSpec(metric="kl", targets=Targets(max_metric=0.0))
    JobSpec(metric="sqnr", targets=Targets(min_metric=-20.0))  # dB: any finite value


def test_lists_are_deduplicated_in_order_and_capped() -> None:
    spec = JobSpec(space=("int8", "int4", "int8"), activation=("a16", "a8", "a16"))
    assert spec.space == ("int8", "int4") and spec.activation == ("a16", "a8")
    assert JobSpec.from_json({"space": ["int4"] * 10_000}).space == ("int4",)
    many = [f"int{b}g{g}" for b in range(2, 9) for g in (32, 64, 128)]
    many += [f"cb{2**k}" for k in range(1, 9)] + [f"int{b}" for b in range(2, 9)]
    assert len(set(many)) > MAX_ENTRIES
    with pytest.raises(InvalidPlanError, match=f"at most {MAX_ENTRIES}"):
        JobSpec.from_json({"space": many})


def test_max_ratio_is_float_bits_over_the_fewest_bits() -> None:
    assert max_ratio(["int8"]) == 4 and max_ratio(["int4", "int8"]) == 8
    assert max_ratio(["int2", "fp16"]) == 16 and max_ratio(["cb2"]) == 32
    assert max_ratio(["fp32"]) == 1


def test_metric_ranges_cover_every_metric() -> None:
    from search import METRICS

    assert set(METRIC_RANGES) == set(METRICS)
    assert all(lo < hi for lo, hi in METRIC_RANGES.values())


def test_parse_bytes_never_overflows() -> None:
    assert parse_bytes("8KB") == 8000 and parse_bytes("1.5MiB") == 1572864
    for text in ("9" * 400, "1e9", "8 KB extra", "-5"):
        with pytest.raises(InvalidPlanError):
            parse_bytes(text)
    assert math.isfinite(parse_bytes("9" * 18))


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_the_largest_seed_seeds_every_runner(sampler: str) -> None:
    from search._study import _sampler

    config = JobSpec(seed=MAX_SEED, sampler=sampler).search_config(model="m", data="d")
    for worker in range(3):  # MAX_SEED + worker wraps round 2^32
        assert _sampler(config, worker) is not None
