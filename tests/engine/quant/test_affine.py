"""Uniform quantization primitives, tested the five ways of STYLE.md."""

from __future__ import annotations

import itertools

import pytest
import torch

from engine.quant import (
    AffineQParams,
    choose_qparams_affine,
    dequantize_affine,
    fake_quantize_affine,
    quantize_affine,
    signed_range,
)


def _sqnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(10 * torch.log10(x.square().sum() / (x - y).square().sum()))


def _w(seed: int = 0, shape: tuple[int, ...] = (16, 8, 3, 3)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# 1. hand-computed values


def test_symmetric_3_bit_per_tensor_by_hand() -> None:
    x = torch.tensor([-1.0, -0.5, 0.2, 1.0])
    qp = choose_qparams_affine(x, bits=3)  # full range [-4, 3], s = max|x| / qmax = 1/3
    assert (qp.qmin, qp.qmax) == (-4, 3) and qp.scale.item() == pytest.approx(1 / 3)
    # x / s = [-3, -1.5, 0.6, 3] -> round half to even -> [-3, -2, 1, 3]
    assert quantize_affine(x, qp).tolist() == [-3, -2, 1, 3]
    torch.testing.assert_close(fake_quantize_affine(x, qp), torch.tensor([-1, -2 / 3, 1 / 3, 1]))


def test_full_signed_range_by_hand() -> None:
    ranges = [(-2, 1), (-4, 3), (-128, 127), (-32768, 32767)]
    assert [signed_range(b) for b in (2, 3, 8, 16)] == ranges
    x = torch.tensor([-1.1, -0.6, 0.4, 1.0])
    qp = choose_qparams_affine(x, bits=2)  # s = max|x| / qmax = 1.1: max scales never clip
    assert quantize_affine(x, qp).tolist() == [-1, -1, 0, 1]
    half = AffineQParams(torch.tensor(0.5), torch.tensor(0, dtype=torch.int32), -2, 1)
    # x / s = [-2.2, -1.2, 0.8, 2] -> [-2, -1, 1, 1]: the fourth level -2s is used
    assert quantize_affine(x, half).tolist() == [-2, -1, 1, 1]
    assert fake_quantize_affine(x, half).tolist() == [-1.0, -0.5, 0.5, 0.5]


def test_asymmetric_2_bit_by_hand() -> None:
    x = torch.tensor([-1.0, 0.0, 2.0, 0.4])
    qp = choose_qparams_affine(x, bits=2, symmetric=False)  # [lo, hi] = [-1, 2]: s = 1, z = 1
    assert (qp.scale.item(), qp.zero_point.item(), qp.qmin, qp.qmax) == (1.0, 1, 0, 3)
    assert quantize_affine(x, qp).tolist() == [0, 1, 3, 1]
    assert fake_quantize_affine(x, qp).tolist() == [-1.0, 0.0, 2.0, 0.0]


def test_group_scales_by_hand() -> None:
    x = torch.tensor([[1.0, -2.0, 0.5, 4.0]])  # one channel, two groups of 2
    qp = choose_qparams_affine(x, bits=4, axis=0, group_size=2)  # qmax = 7
    torch.testing.assert_close(qp.scale, torch.tensor([[2 / 7, 4 / 7]]))


# 2. independent reference: PyTorch's own fake-quant kernels, exact equality


@pytest.mark.parametrize(("bits", "axis"), list(itertools.product([2, 3, 4, 5, 8, 16], [0, 1])))
def test_per_channel_equals_torch_fake_quantize(bits: int, axis: int) -> None:
    x = _w(bits) * 3
    for method in ("max", "mse"):
        qp = choose_qparams_affine(x, bits=bits, axis=axis, method=method)  # type: ignore[arg-type]
        ref = torch.fake_quantize_per_channel_affine(
            x, qp.scale, qp.zero_point, axis, qp.qmin, qp.qmax
        )
        assert torch.equal(fake_quantize_affine(x, qp), ref)


@pytest.mark.parametrize("bits", [4, 8])
def test_per_tensor_asymmetric_equals_torch_fake_quantize(bits: int) -> None:
    x = torch.relu(_w(7, (4096,))) * 5 - 0.3
    qp = choose_qparams_affine(x, bits=bits, symmetric=False)
    ref = torch.fake_quantize_per_tensor_affine(
        x, qp.scale.item(), int(qp.zero_point), qp.qmin, qp.qmax
    )
    assert torch.equal(fake_quantize_affine(x, qp), ref)


@pytest.mark.parametrize("group", [32, 64])
def test_per_group_equals_torch_per_channel_on_the_group_view(group: int) -> None:
    x = _w(3, (8, 128))
    qp = choose_qparams_affine(x, bits=4, axis=0, group_size=group, method="mse")
    rows = x.reshape(-1, group)
    ref = torch.fake_quantize_per_channel_affine(
        rows, qp.scale.reshape(-1), qp.zero_point.reshape(-1), 0, qp.qmin, qp.qmax
    )
    assert torch.equal(fake_quantize_affine(x, qp), ref.reshape(x.shape))


# 3. properties over bits x signedness x granularity

GRANULARITY = [(None, None), (0, None), (0, 24)]


@pytest.mark.parametrize(
    ("bits", "symmetric", "gran"), list(itertools.product([2, 3, 4, 8], [True, False], GRANULARITY))
)
def test_codes_in_range_error_bounded_and_zero_exact(
    bits: int, symmetric: bool, gran: tuple[int | None, int | None]
) -> None:
    axis, group = gran
    x = _w(bits)
    x[0, 0, 0, 0] = 0.0
    qp = choose_qparams_affine(x, bits=bits, symmetric=symmetric, axis=axis, group_size=group)
    q = quantize_affine(x, qp)
    assert q.dtype == torch.int32 and q.min() >= qp.qmin and q.max() <= qp.qmax
    fq = fake_quantize_affine(x, qp)
    scale = dequantize_affine(torch.ones_like(q), qp) - dequantize_affine(torch.zeros_like(q), qp)
    assert bool(((fq - x).abs() <= scale / 2 + 1e-6).all())  # max method clips nothing
    assert fq[0, 0, 0, 0] == 0.0
    if symmetric:
        assert torch.equal(fake_quantize_affine(-x, qp), -fq)


# 4. round trip and idempotence


@pytest.mark.parametrize(("bits", "gran"), list(itertools.product([2, 4, 8], GRANULARITY)))
def test_round_trip_and_idempotence(bits: int, gran: tuple[int | None, int | None]) -> None:
    axis, group = gran
    x = _w(11)
    qp = choose_qparams_affine(x, bits=bits, axis=axis, group_size=group, method="mse")
    q = quantize_affine(x, qp)
    assert torch.equal(quantize_affine(dequantize_affine(q, qp), qp), q)
    fq = fake_quantize_affine(x, qp)
    assert torch.equal(fake_quantize_affine(fq, qp), fq)
    assert not torch.equal(x, fq)  # inputs are not modified in place
    assert torch.equal(x, _w(11))


# 5. quality floor


@pytest.mark.parametrize(("bits", "floor_db"), [(2, 8.0), (3, 13.5), (4, 19.0), (8, 42.0)])
def test_sqnr_floor_and_mse_never_worse_than_max(bits: int, floor_db: float) -> None:
    w = _w(5, (64, 256))
    fq_max = fake_quantize_affine(w, choose_qparams_affine(w, bits=bits, axis=0))
    fq_mse = fake_quantize_affine(w, choose_qparams_affine(w, bits=bits, axis=0, method="mse"))
    assert _sqnr(w, fq_mse) >= floor_db
    per_row_max = (w - fq_max).square().sum(1)
    per_row_mse = (w - fq_mse).square().sum(1)
    assert bool((per_row_mse <= per_row_max).all())


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_the_extra_negative_code_never_hurts(bits: int) -> None:
    """At the same scales, the full range errs no more than the restricted one, weight by weight."""
    w = _w(6, (32, 64))
    qp = choose_qparams_affine(w, bits=bits, axis=0, method="mse")
    restricted = AffineQParams(qp.scale, qp.zero_point, qp.qmin + 1, qp.qmax, axis=0)
    err_full = (fake_quantize_affine(w, qp) - w).abs()
    err_restricted = (fake_quantize_affine(w, restricted) - w).abs()
    assert bool((err_full <= err_restricted).all())
    if bits <= 4:  # MSE clips at low widths, and the clipped negatives gain
        assert bool((err_full < err_restricted).any())


def test_invalid_qparams_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        AffineQParams(torch.tensor(0.0), torch.tensor(0, dtype=torch.int32), -1, 1)
    with pytest.raises(ValueError, match="bits"):
        choose_qparams_affine(torch.ones(3), bits=1)
    with pytest.raises(ValueError, match="does not divide"):
        choose_qparams_affine(torch.ones(2, 30), bits=4, axis=0, group_size=32)
