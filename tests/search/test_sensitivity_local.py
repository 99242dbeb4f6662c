"""Layer-local sensitivity on the real digits CNN: sane values, and the ranking of today's
full-forward damage."""

from __future__ import annotations

import math

import pytest
from scipy.stats import spearmanr

from search import SearchConfig, SearchSpace, Targets, open_evaluator
from search._evaluator import Evaluator
from search._sensitivity import Sensitivity, measure_sensitivity
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
