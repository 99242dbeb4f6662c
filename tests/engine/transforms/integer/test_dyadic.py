"""Dyadic requantization and per-tensor qparams: hand values, torch reference, properties."""

from __future__ import annotations

import pytest
import torch

from engine.quant import choose_qparams_affine
from engine.transforms.integer import QSpec, dyadic, qspec_for_range, requantize

U8 = QSpec(1.0, 0, -(2**40), 2**40)  # a wide range: no clamping in the arithmetic tests


def test_hand_computed_requantization_rounds_half_up() -> None:
    d = dyadic(0.5)
    assert (int(d.m), d.shift) == (2**30, 31)  # 0.5 = 2^30 * 2^-31, 31-bit m
    acc = torch.tensor([3, -3, 5, 4, -1, 0])
    # 1.5 -> 2, -1.5 -> -1, 2.5 -> 3, 2 -> 2, -0.5 -> 0, 0 -> 0 (floor(x + 1/2))
    assert requantize(acc, d, U8).tolist() == [2, -1, 3, 2, 0, 0]
    d3 = dyadic(0.75)
    assert (int(d3.m), d3.shift) == (3 * 2**29, 31)
    out = QSpec(1.0, 10, 0, 20)
    assert requantize(torch.tensor([4, 100, -100]), d3, out).tolist() == [13, 20, 0]


def test_per_channel_multipliers_share_one_shift() -> None:
    d = dyadic(torch.tensor([0.5, 0.25, 0.001]))
    assert d.shift == 31 and d.m.tolist()[:2] == [2**30, 2**29]
    acc = torch.tensor([[8, 8, 8000]])
    assert requantize(acc, d, U8, axis=1).tolist() == [[4, 2, 8]]


def test_per_channel_shifts_keep_31_bits_for_every_channel() -> None:
    # a dead channel after batch-norm folding: its weight scale 1e-9 of another's
    mult = torch.tensor([0.5, 0.5e-9], dtype=torch.float64)
    shared = dyadic(mult)
    assert shared.m.tolist() == [2**30, 1]  # one shift: the small multiplier keeps 1 bit
    d = dyadic(mult, per_channel=True)
    assert isinstance(d.shift, torch.Tensor) and d.shift.tolist() == [31, 61]
    assert d.m.tolist() == [2**30, round(0.5e-9 * 2**61)]
    assert all(2**30 <= m < 2**31 for m in d.m.tolist())
    acc = torch.tensor([[8, 3_000_000_001]])  # 1.5000000005 -> 2 (round half up near a tie)
    assert requantize(acc, d, U8, axis=1).tolist() == [[4, 2]]
    assert requantize(acc, shared, U8, axis=1).tolist() == [[4, 1]]  # 1 * 2^-31 lost it


def test_per_channel_shifts_shrink_where_a_channel_accumulates_more() -> None:
    bounds = torch.tensor([2.0**31 - 1, 2.0**45], dtype=torch.float64)
    d = dyadic(torch.tensor([0.01, 0.01]), acc_bound=bounds, per_channel=True)
    assert isinstance(d.shift, torch.Tensor)
    assert int(d.m[0]) >= 2**30 and int(d.m[1]) < 2**17  # 62 - 46 bits for the second
    assert all(int(m) * b < 2**63 for m, b in zip(d.m.tolist(), bounds.tolist(), strict=True))
    assert float((d.real() - 0.01).abs().max()) <= 2.0 ** -(int(d.shift.min()) + 1)


@pytest.mark.parametrize("seed", range(4))
def test_per_channel_matches_float_rounding_except_on_ties(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    mult = torch.rand(16, generator=gen, dtype=torch.float64) * 10.0 ** -torch.arange(16) + 1e-18
    acc = torch.randint(-(2**24), 2**24, (1000, 16), generator=gen)
    d = dyadic(mult, acc_bound=2.0**24, per_channel=True)
    assert isinstance(d.shift, torch.Tensor)
    got = requantize(acc, d, U8, axis=1)
    ref = torch.round(acc.double() * mult).long()
    assert (got - ref).abs().max() <= 1
    assert float((got == ref).double().mean()) > 0.99


@pytest.mark.parametrize("seed", range(4))
def test_matches_float_rounding_except_on_ties(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    mult = torch.rand(16, generator=gen, dtype=torch.float64) * 10 ** (seed - 3) + 1e-6
    acc = torch.randint(-(2**24), 2**24, (1000, 16), generator=gen)
    d = dyadic(mult, acc_bound=2.0**24)
    got = requantize(acc, d, U8, axis=1)
    exact = acc.double() * mult
    ref = torch.round(exact).long()  # half to even, the simulated twin's rule
    assert (got - ref).abs().max() <= 1
    # away from ties by more than m's error can move the product, the two agree exactly
    slack = acc.abs().double() * 2.0 ** -(d.shift + 1) + 1e-9
    not_tie = (exact - exact.floor() - 0.5).abs() > slack
    assert not_tie.float().mean() > 0.5
    assert torch.equal(got[not_tie], ref[not_tie])
    assert float((d.real() - mult).abs().max()) <= 2.0 ** -(d.shift + 1)


def test_multiplier_precision_shrinks_to_keep_products_in_int64() -> None:
    mult = 0.3 * 2.0**-24  # a 40-bit accumulator into a 16-bit output
    d = dyadic(mult, acc_bound=2.0**40)
    assert int(d.m) * 2**40 < 2**63 and int(d.m) < 2**22
    acc = torch.tensor([2**40 - 1, -(2**40) + 1, 12345678901])
    ref = torch.round(acc.double() * mult).long()
    assert (requantize(acc, d, U8) - ref).abs().max() <= 1


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), 2.0**31])
def test_bad_multipliers_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        dyadic(bad)


def test_qspec_quantize_is_torch_fake_quantize() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4096, generator=gen) * 3
    for spec in (QSpec(0.0173, 131, 0, 255), QSpec(0.5, 0, -128, 127), QSpec(1e-3, 7, 0, 65535)):
        ref = torch.fake_quantize_per_tensor_affine(
            x, spec.scale, spec.zero_point, spec.qmin, spec.qmax
        )
        assert torch.equal(spec.dequantize(spec.quantize(x)), ref)


def test_qspec_for_range_is_the_activation_rule() -> None:
    for lo, hi, bits in ((-1.5, 4.0, 8), (0.0, 6.0, 8), (-3.0, 3.0, 16), (0.2, 0.9, 8)):
        spec = qspec_for_range(lo, hi, bits)
        qp = choose_qparams_affine(torch.tensor([lo, hi]), bits=bits, symmetric=False)
        assert spec.scale == pytest.approx(float(qp.scale), rel=1e-6)
        assert spec.zero_point == int(qp.zero_point) and (spec.qmin, spec.qmax) == (0, 2**bits - 1)
        assert spec.quantize(torch.tensor([0.0])).item() == spec.zero_point  # 0 is exact
    assert qspec_for_range(0.0, 0.0, 8) == QSpec(1.0, 0, 0, 255)
