"""Layer-local sensitivity on the real digits CNN: sane values, and the ranking of today's
full-forward damage."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from scipy.stats import spearmanr

from search import SearchConfig, SearchSpace, Targets, open_evaluator
from search._evaluator import Evaluator
from search._open import FULL_SENSITIVITY_MACS, sensitivity_method
from search._sensitivity import Sensitivity, cache_path, measure_sensitivity, read_cache
from search._sensitivity_local import measure_sensitivity_local

SPACE = SearchSpace(formats=("int2", "int3", "int4", "int8", "cb4", "cb16", "fp16"))
SPEARMAN_FLOOR = 0.9
"""Measured 0.97 (seed 0) over the 52 pairs of SPACE; the floor leaves margin."""


@pytest.fixture(scope="module")
def evaluator(digits) -> Evaluator:  # type: ignore[no-untyped-def]
    """One evaluator for the module: opening the model is most of the cost."""
    cfg = SearchConfig(
        model=str(digits.pt2),
        data=str(digits.npz),
        metric="accuracy",
        targets=Targets(max_drop=0.01),
        space=SPACE,
        trials=1,
        seed=0,
    )
    return open_evaluator(cfg)


@pytest.fixture(scope="module")
def local(evaluator: Evaluator) -> Sensitivity:
    return measure_sensitivity_local(evaluator, SPACE)


def test_estimates_are_finite_and_non_negative(local: Sensitivity) -> None:
    values = [v for per in local.values() for v in per.values()]
    assert len(values) == sum(len(SPACE.choices(x)) for x in local)
    assert all(math.isfinite(v) and v >= 0.0 for v in values)


def test_fp32_with_float_activations_costs_nothing(evaluator: Evaluator) -> None:
    space = SearchSpace(formats=("fp32",), activations=("float",))
    sens = measure_sensitivity_local(evaluator, space)
    assert all(per == {"fp32/-/float": 0.0} for per in sens.values())


def test_damage_falls_with_bits_in_every_layer(local: Sensitivity) -> None:
    for layer, per in local.items():
        for r in ("nearest", "gptq"):
            int2, int4, int8 = (per[f"int{b}/{r}/a8"] for b in (2, 4, 8))
            assert int2 > int4 > int8 > 0.0, (layer, r, int2, int4, int8)


def test_the_estimate_ranks_pairs_as_the_full_forward_damage(
    evaluator: Evaluator, local: Sensitivity
) -> None:
    full = measure_sensitivity(evaluator, SPACE)
    keys = [(x, c) for x in full for c in full[x]]
    rho = spearmanr([full[x][c] for x, c in keys], [local[x][c] for x, c in keys]).statistic
    assert rho > SPEARMAN_FLOOR, rho


def test_same_seed_same_estimate(evaluator: Evaluator, local: Sensitivity) -> None:
    assert measure_sensitivity_local(evaluator, SPACE) == local


def test_a_cached_table_is_read_back_not_measured(
    evaluator: Evaluator, local: Sensitivity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "local.json"
    assert measure_sensitivity_local(evaluator, SPACE, cache_file=cache) == local
    assert len(read_cache(cache)) == sum(len(per) for per in local.values())

    def no_pass(*a: object, **k: object) -> None:
        raise AssertionError("the table was measured again")

    monkeypatch.setattr("search._sensitivity_local.layer_curvature", no_pass)
    assert measure_sensitivity_local(evaluator, SPACE, cache_file=cache) == local


def test_auto_takes_full_on_digits_and_local_above_the_mac_limit(
    evaluator: Evaluator, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = SearchConfig(model="m", data="d", metric="accuracy", space=SPACE)
    pairs = sum(len(SPACE.choices(x.name)) for x in evaluator.layers)
    assert pairs * evaluator.total_macs <= FULL_SENSITIVITY_MACS
    assert sensitivity_method(cfg, evaluator) == "full"
    monkeypatch.setattr(evaluator, "total_macs", FULL_SENSITIVITY_MACS // pairs + 1)
    assert sensitivity_method(cfg, evaluator) == "local"
    assert sensitivity_method(replace(cfg, sensitivity="full"), evaluator) == "full"


def test_the_two_methods_never_share_a_cache_file(tmp_path: Path) -> None:
    args = (tmp_path, "a" * 64, "b" * 64, "accuracy")
    assert cache_path(*args, method="local") != cache_path(*args, method="full")
