"""Each integer kernel against its simulated twin: float op on dequantized inputs, then
quantize to the output qparams. They agree within one output step (and mostly exactly)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.transforms.integer import QSpec, QTensor, dyadic, qspec_for_range, requantize
from engine.transforms.integer._kernels import (
    add_int,
    conv_acc,
    grouped_linear_int,
    linear_acc,
    matmul_int,
    rescale_int,
    sum_pool_int,
)


def _q(shape: tuple[int, ...], spec: QSpec, seed: int) -> QTensor:
    gen = torch.Generator().manual_seed(seed)
    return QTensor(torch.randint(spec.qmin, spec.qmax + 1, shape, generator=gen), spec)


def _w(shape: tuple[int, ...], bits: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q = 2 ** (bits - 1) - 1
    return torch.randint(-q, q + 1, shape, generator=gen)


def _check(got: torch.Tensor, twin_real: torch.Tensor, out: QSpec) -> None:
    want = out.quantize(twin_real)
    diff = (got - want).abs()
    assert int(diff.max()) <= 1, f"{int(diff.max())} steps apart"
    assert float((diff == 0).float().mean()) > 0.95
    assert got.dtype == torch.int64 and got.min() >= out.qmin and got.max() <= out.qmax


X = QSpec(0.02, 37, 0, 255)


@pytest.mark.parametrize(
    ("groups", "stride", "padding", "bits"),
    [(1, 1, 1, 8), (1, 2, 0, 4), (8, 1, 1, 8), (2, 1, 1, 3)],
    ids=["conv", "strided", "depthwise", "grouped-int3"],
)
def test_conv(groups: int, stride: int, padding: int, bits: int) -> None:
    x = _q((2, 8, 9, 9), X, 0)
    w_i = _w((8, 8 // groups, 3, 3), bits, 1)
    s_w = torch.rand(8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) / 50 + 1e-3
    bias = torch.randn(8, generator=torch.Generator().manual_seed(3)).double()
    real = F.conv2d(
        x.dequantize().double(),
        w_i.double() * s_w[:, None, None, None],
        bias,
        stride,
        padding,
        1,
        groups,
    )
    out = qspec_for_range(float(real.min()), float(real.max()), 8)
    bias_i = torch.round(bias / (X.scale * s_w)).long()
    acc = conv_acc(
        x, w_i, stride=[stride] * 2, padding=[padding] * 2, dilation=[1, 1], groups=groups
    )
    acc = acc + bias_i.reshape(1, -1, 1, 1)
    got = requantize(acc, dyadic(X.scale * s_w / out.scale), out, axis=1)
    # the twin's bias is rounded to the int32 grid too: the same rounding as the kernel's
    twin = F.conv2d(
        x.dequantize().double(),
        w_i.double() * s_w[:, None, None, None],
        bias_i.double() * X.scale * s_w,
        stride,
        padding,
        1,
        groups,
    )
    _check(got, twin.float(), out)


def test_conv1d() -> None:
    x = _q((2, 4, 20), X, 4)
    w_i = _w((6, 4, 5), 8, 5)
    s_w = torch.full((6,), 0.01, dtype=torch.float64)
    real = F.conv1d(x.dequantize().double(), w_i.double() * 0.01, None, 1, 2)
    out = qspec_for_range(float(real.min()), float(real.max()), 8)
    acc = conv_acc(x, w_i, stride=[1], padding=[2], dilation=[1], groups=1)
    _check(requantize(acc, dyadic(X.scale * s_w / out.scale), out, axis=1), real.float(), out)


def test_linear_and_grouped_linear() -> None:
    x = _q((3, 5, 64), X, 6)
    w_i = _w((10, 64), 4, 7)
    gen = torch.Generator().manual_seed(8)
    s_w = torch.rand(10, dtype=torch.float64, generator=gen) / 10 + 1e-3
    real = x.dequantize().double() @ (w_i.double() * s_w[:, None]).T
    out = qspec_for_range(float(real.min()), float(real.max()), 16)
    got = requantize(linear_acc(x, w_i), dyadic(X.scale * s_w / out.scale), out, axis=-1)
    _check(got, real.float(), out)
    s_g = torch.rand(10, 4, dtype=torch.float64, generator=gen) / 10 + 1e-3  # groups of 16
    bias = torch.randn(10, generator=gen).double()
    w_real = w_i.double() * s_g.repeat_interleave(16, dim=1)
    real = x.dequantize().double() @ w_real.T + bias
    out = qspec_for_range(float(real.min()), float(real.max()), 8)
    bound = float(255 * w_i.abs().sum(-1).max())
    _check(grouped_linear_int(x, w_i, s_g, bias, out, bound), real.float(), out)


@pytest.mark.parametrize("sign", [1, -1])
def test_add_and_sub(sign: int) -> None:
    a = _q((4, 100), QSpec(0.05, 128, 0, 255), 9)
    b = _q((4, 100), QSpec(0.0003, 30000, 0, 65535), 10)
    real = a.dequantize().double() + sign * b.dequantize().double()
    out = qspec_for_range(float(real.min()), float(real.max()), 16)
    _check(add_int(a, b, out, sign=sign), real.float(), out)


def test_activation_matmul() -> None:
    a = _q((2, 4, 16, 32), QSpec(0.03, 120, 0, 255), 11)
    b = _q((2, 4, 32, 16), QSpec(0.07, 10, 0, 255), 12)
    real = a.dequantize().double() @ b.dequantize().double()
    out = qspec_for_range(float(real.min()), float(real.max()), 8)
    _check(matmul_int(a, b, out), real.float(), out)


def test_average_pool_and_rescale() -> None:
    x = _q((2, 3, 8, 8), X, 13)
    real = F.adaptive_avg_pool2d(x.dequantize().double(), 1)
    out = qspec_for_range(float(real.min()), float(real.max()), 8)
    sums = torch.round(F.avg_pool2d(x.offset(), 8, 8, divisor_override=1)).long()
    _check(sum_pool_int(x, sums, 64, out), real.float(), out)
    wide = qspec_for_range(-1.0, 5.0, 16)
    _check(rescale_int(x, wide), x.dequantize(), wide)
    assert torch.equal(rescale_int(x, X), x.q)  # same qparams: the codes themselves


def test_accumulators_equal_an_int64_reference_exactly() -> None:
    x = _q((7, 384), QSpec(1.0, 128, 0, 255), 14)
    w_i = _w((33, 384), 8, 15)
    ref = ((x.q - 128).unsqueeze(1) * w_i.unsqueeze(0)).sum(-1)  # int64 throughout
    assert torch.equal(linear_acc(x, w_i), ref)
    xc = _q((1, 3, 5, 5), QSpec(1.0, 3, 0, 255), 16)
    wc = _w((2, 3, 3, 3), 8, 17)
    patches = F.unfold((xc.q - 3).double(), 3).round().long()  # [1, 27, 9]
    ref_c = (wc.reshape(2, 27) @ patches[0]).reshape(1, 2, 3, 3)  # int64 matmul
    acc = conv_acc(xc, wc, stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=1)
    assert torch.equal(acc, ref_c)
