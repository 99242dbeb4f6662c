"""The job spec: defaults, JSON round trip, one validation for every front door."""

from __future__ import annotations

import math

import pytest

from engine.errors import InvalidPlanError
from search import JobSpec, SearchConfig, SearchSpace, Targets
from search._spec import SPEC_VERSION


def test_defaults_round_trip_and_build_the_search_config() -> None:
    spec = JobSpec(targets=Targets(max_drop=0.01))
    doc = spec.to_json()
    assert doc["version"] == SPEC_VERSION == 1
    assert doc["budget"] == {"trials": 100, "timeout_s": None}
    assert doc["space"] is None and doc["rounding"] == ["nearest", "gptq"]
    assert JobSpec.from_json(doc) == spec
    config = spec.search_config(model="m.pt2", data="d.npz")
    assert config.space == SearchSpace() and config.trials == 100 and config.metric == "accuracy"


def test_every_option_survives_json() -> None:
    spec = JobSpec(
        metric="cosine",
        targets=Targets(min_metric=0.99, max_bytes=8000),
        space=("int4", "cb16"),
        rounding=("nearest",),
        activation=("a8", "a16"),
        pins=(("classifier*", "int8"), ("embed*", "fp16")),
        trials=7,
        timeout_s=30.0,
        seed=3,
        sampler="random",
        parallelism=2,
        holdout=0.4,
    )
    back = JobSpec.from_json(spec.to_json())
    assert back == spec
    space = back.search_space()
    assert space.formats == ("int4", "cb16") and space.activations == ("a8", "a16")
    assert list(space.pins) == ["classifier*", "embed*"]  # order kept: first match wins
    assert space.pins["classifier*"] == "int8/nearest/a8"
    config = back.search_config(model="m.pt2", data="d.npz")
    assert config.holdout == 0.4 and SearchConfig.from_json(config.to_json()) == config


def test_holdout_defaults_to_a_quarter_and_old_studies_had_none() -> None:
    assert JobSpec().holdout == JobSpec.from_json({"holdout": None}).holdout == 0.25
    assert JobSpec.from_json({"holdout": 0}).search_config(model="m", data="d").holdout == 0
    old = JobSpec().search_config(model="m", data="d").to_json()
    del old["holdout"]  # a study's config written before the held-out split
    assert SearchConfig.from_json(old).holdout == 0.0


def test_max_bytes_takes_a_size_string_and_duplicates_are_dropped() -> None:
    spec = JobSpec.from_json({"targets": {"max_bytes": "8KB"}, "space": ["int4", "int4", "cb16"]})
    assert spec.targets.max_bytes == 8000 and spec.space == ("int4", "cb16")


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"metric": "f1"}, "`metric` 'f1'"),
        ({"targets": {"max_drop": 0.01, "min_metric": 0.9}}, "at most one of"),
        ({"targets": {"max_bytes": 10, "min_ratio": 4}}, "at most one of"),
        ({"metric": "sqnr", "targets": {"max_drop": 1}}, "min_metric"),
        ({"metric": "kl", "targets": {"max_drop": 0.1}}, "give `targets.max_metric`"),
        ({"metric": "nmse", "targets": {"min_metric": 0.1}}, "`targets.min_metric` means nothing"),
        (
            {"metric": "cosine", "targets": {"max_metric": 0.1}},
            "give `targets.min_metric`, `targets.max_drop`",
        ),
        ({"metric": "kl", "targets": {"max_metric": 0.1, "max_drop": 0.1}}, "at most one of"),
        ({"metric": "kl", "targets": {"max_metric": math.inf}}, "finite"),
        (
            {"metric": "kl", "targets": {"max_metric": "low"}},
            "`targets.max_metric` must be a number",
        ),
        ({"targets": {"min_metric": math.nan}}, "finite"),
        ({"targets": {"min_ratio": math.inf}}, "finite"),
        ({"targets": {"max_drop": -1}}, "max_drop"),
        ({"space": []}, "at least one weight format"),
        ({"space": ["int9"]}, "int9"),
        ({"rounding": ["stochastic"]}, "rounding"),
        ({"sampler": "grid"}, "sampler"),
        ({"budget": {"trials": 0}}, "`budget.trials` must be between 1 and"),
        ({"budget": {"timeout_s": 0}}, "timeout_s"),
        ({"budget": {"trials": True}}, "`budget.trials` must be an integer"),
        ({"seed": 2**64}, "`seed` must be between 0 and 4294967295"),
        ({"parallelism": 0}, "parallelism"),
        ({"holdout": 0.95}, "holdout must be a fraction of the evaluation samples in [0, 0.9]"),
        ({"holdout": -0.1}, "holdout must be"),
        ({"holdout": "0.2"}, "`holdout` must be a number"),
        ({"pins": {"fc": "int9"}}, "int9"),
        ({"pins": ["fc=int8"]}, "`pins` must be an object"),
        ({"space": "int4"}, "`space` must be a list"),
        ({"budget": {"trial": 5}}, "unknown budget option 'trial'"),
        ({"bits": 4}, "unknown job option 'bits'"),
        ({"version": 2}, "version 2"),
    ],
)
def test_invalid_specs_are_refused_with_a_message(doc: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidPlanError) as info:
        JobSpec.from_json(doc)
    assert words in str(info.value), str(info.value)


def test_lower_is_better_metrics_take_max_metric() -> None:
    spec = JobSpec.from_json({"metric": "kl", "targets": {"max_metric": 0.01}})
    assert spec.targets == Targets(max_metric=0.01) and spec.targets.has_metric_target
    assert JobSpec.from_json(spec.to_json()) == spec
    config = spec.search_config(model="m.pt2", data="d.npz")
    assert config.metric == "kl" and config.targets.metric_ceiling() == 0.01
    assert JobSpec(metric="top5", targets=Targets(max_drop=0.01)).metric == "top5"
    with pytest.raises(InvalidPlanError, match="max_metric"):
        SearchConfig(model="m", data="d", metric="nmse", targets=Targets(max_drop=0.1))


def test_no_targets_is_a_trade_off_search() -> None:
    assert JobSpec().targets == Targets()


def test_rows_written_before_the_spec_are_read() -> None:
    legacy = {
        "model": "models/1/ir.json",
        "data": "datasets/1/d.npz",
        "metric": "accuracy",
        "targets": {
            "max_drop": 0.02,
            "max_drop_rel": None,
            "min_metric": None,
            "max_bytes": None,
            "min_ratio": None,
        },
        "space": {
            "formats": ["int4", "int8"],
            "roundings": ["nearest"],
            "activations": ["a8"],
            "pins": {},
            "scale": "mse",
        },
        "trials": 12,
        "timeout_s": None,
        "seed": 1,
        "sampler": "tpe",
        "ilp_seeds": 8,
        "chunks": [0.25, 1.0],
        "cache_dir": None,
        "parallelism": 3,
    }
    spec = JobSpec.from_stored(legacy)
    assert spec.space == ("int4", "int8") and spec.rounding == ("nearest",)
    assert (spec.trials, spec.seed, spec.parallelism) == (12, 1, 3)
    assert spec.targets.max_drop == 0.02
    assert JobSpec.from_stored(spec.to_json()) == spec
