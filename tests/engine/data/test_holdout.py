"""The search / held-out split of the evaluation samples, and the metric intervals."""

from __future__ import annotations

import math

import pytest
import torch

from engine.data import (
    Split,
    bootstrap_interval,
    holdout_indices,
    holdout_split,
    metric_interval,
    wilson_interval,
)


def test_stratified_split_takes_each_class_in_proportion() -> None:
    # 12 samples, classes 0 (8), 1 (4): k = 3 held out, quotas 2 and 1 exactly.
    labels = torch.tensor([0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0])
    cut = holdout_indices(12, 0.25, seed=0, strata=labels)
    assert cut.active and cut.note is None
    assert sorted(labels[cut.heldout].tolist()) == [0, 0, 1]
    assert torch.equal(torch.sort(torch.cat([cut.search, cut.heldout])).values, torch.arange(12))


def test_largest_remainder_rounds_the_quotas() -> None:
    # 10 samples, classes of 5, 3, 2; f = 0.3 -> k = 3, quotas 1.5, 0.9, 0.6:
    # floors 1, 0, 0; the 2 left go to 0.9 and 0.6 (largest remainders) -> 1, 1, 1.
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    cut = holdout_indices(10, 0.3, seed=5, strata=labels)
    assert sorted(labels[cut.heldout].tolist()) == [0, 1, 2]
    # k = floor(f n + 1/2): 0.25 of 10 holds out 3 (2.5 rounded half up)
    assert holdout_indices(10, 0.25, seed=0).heldout.numel() == 3


@pytest.mark.parametrize("seed", [0, 1, 2**40])
def test_split_is_disjoint_complete_and_the_same_for_a_seed(seed: int) -> None:
    labels = torch.arange(97) % 7
    a = holdout_indices(97, 0.25, seed=seed, strata=labels)
    b = holdout_indices(97, 0.25, seed=seed, strata=labels)
    assert torch.equal(a.search, b.search) and torch.equal(a.heldout, b.heldout)
    assert a.heldout.numel() == 24 and a.search.numel() == 73
    assert not set(a.search.tolist()) & set(a.heldout.tolist())
    assert sorted(a.search.tolist() + a.heldout.tolist()) == list(range(97))
    assert torch.all(a.heldout[1:] > a.heldout[:-1])  # increasing: dataset order kept
    other = holdout_indices(97, 0.25, seed=seed + 1, strata=labels)
    assert not torch.equal(other.heldout, a.heldout)


def test_tiny_data_turns_the_split_off_with_a_note() -> None:
    for n, f in ((3, 0.25), (5, 0.25), (4, 0.9)):  # 1 held out / 3 left; 1 / 4; 4 / 0
        cut = holdout_indices(n, f, seed=0)
        assert not cut.active and torch.equal(cut.search, torch.arange(n))
        assert cut.note is not None and "at least 2" in cut.note
    assert holdout_indices(4, 0.5, seed=0).heldout.numel() == 2  # 2 and 2: allowed
    off = holdout_indices(100, 0.0, seed=0)
    assert not off.active and off.note is None


def test_holdout_split_selects_rows_and_stratifies_by_labels() -> None:
    x = torch.arange(20, dtype=torch.float32).reshape(20, 1)
    labels = torch.tensor([0] * 16 + [1] * 4)
    search, held, cut = holdout_split(Split({"x": x}, labels), 0.25, seed=3)
    assert held is not None and held.labels is not None and search.labels is not None
    assert held.num_samples == 5 and search.num_samples == 15
    assert sorted(held.labels.tolist()) == [0, 0, 0, 0, 1]
    assert torch.equal(held.inputs["x"].flatten(), cut.heldout.float())
    whole, none, _ = holdout_split(Split({"x": x[:3]}, None), 0.25, seed=3)
    assert none is None and whole.num_samples == 3


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="fraction"):
        holdout_indices(10, 1.0, seed=0)
    with pytest.raises(ValueError, match="strata"):
        holdout_indices(10, 0.25, seed=0, strata=torch.zeros(9))


def test_wilson_interval_matches_hand_computed_values() -> None:
    # z = 1.959964; 8/10: center (0.8 + 0.192073) / 1.384146 = 0.716738,
    # half 1.415985 * sqrt(0.016 + 0.009604) = 0.226576.
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490162, abs=1e-6) and hi == pytest.approx(0.943318, abs=1e-6)
    lo, hi = wilson_interval(0, 10)  # center = half = 0.138732
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.277533, abs=1e-6)
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(0.722467, abs=1e-6) and hi == 1.0
    lo, hi = wilson_interval(50, 100, level=0.9)  # z = 1.644854
    assert (lo, hi) == pytest.approx((0.418848, 0.581152), abs=1e-6)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    assert bootstrap_interval(torch.full((7,), 0.5), seed=0) == (0.5, 0.5)
    values = torch.linspace(0.9, 1.0, 50, dtype=torch.float64)
    a = bootstrap_interval(values, seed=4)
    assert a == bootstrap_interval(values, seed=4) != bootstrap_interval(values, seed=5)
    # the mean 0.95 has a standard error of 0.0295/sqrt(50) = 0.00417: about +-0.0082
    assert a[0] < 0.95 < a[1] and a[1] - a[0] == pytest.approx(2 * 1.96 * 0.00417, rel=0.15)
    # a ratio of sums: values / weights, resampled together
    ratio = bootstrap_interval(2 * values, seed=4, weights=values)
    assert ratio == pytest.approx((2.0, 2.0))


def test_metric_interval_per_metric() -> None:
    logits = torch.eye(4).repeat(3, 1)[:10]  # argmax = i mod 4
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 1, 0])  # 8 of 10 right
    assert metric_interval("accuracy", logits, labels) == wilson_interval(8, 10)
    assert metric_interval("agreement", logits, logits) == wilson_interval(10, 10)
    ref = torch.randn(10, 5, generator=torch.Generator().manual_seed(0))
    assert metric_interval("cosine", ref, ref) == pytest.approx((1.0, 1.0))
    lo, hi = metric_interval("sqnr", ref * 1.01, ref, seed=1) or (math.nan, math.nan)
    assert lo == pytest.approx(40.0) and hi == pytest.approx(40.0)  # noise = 1e-4 signal
    assert metric_interval("sqnr", ref, ref) == (math.inf, math.inf)
    assert metric_interval("kl_divergence", ref, ref) is None
    # per-token logits: the positions of a sample are bootstrapped together
    tokens = torch.stack([logits, logits], dim=1)  # [10, 2, 4]
    token_labels = torch.stack([labels, labels], dim=1)
    lo, hi = metric_interval("accuracy", tokens, token_labels) or (0.0, 0.0)
    assert lo < 0.8 < hi <= 1.0
