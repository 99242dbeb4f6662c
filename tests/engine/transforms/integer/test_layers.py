"""Integer weights of a layer: the int32 bias of a dead channel, accumulator bounds."""

from __future__ import annotations

import torch

from engine.transforms.integer import QSpec
from engine.transforms.integer._layers import (
    INT32_MAX,
    IntWeight,
    accumulator_bound,
    accumulator_bounds,
    fit_int32_bias,
    int_bias,
)

X = QSpec(0.0078125, 127, 0, 255)  # an image in [-1, 1]: max |x - z| = 128


def _stem() -> tuple[IntWeight, torch.Tensor]:
    """EfficientNet-Lite2's stem conv after folding: channel 1 dead (s_w 2.7e-11, bias -1.56),
    channel 2 dead with a positive bias."""
    gen = torch.Generator().manual_seed(0)
    w_i = torch.randint(-127, 128, (3, 3, 3, 3), generator=gen)
    scale = torch.tensor([0.0098, 2.7461e-11, 4.0e-10], dtype=torch.float64)
    return IntWeight(w_i, scale, None, "int8"), torch.tensor([0.5, -1.5596, 0.75])


def test_hand_computed_bias_and_bound() -> None:
    w = IntWeight(torch.tensor([[1, -2], [3, 0]]), torch.tensor([0.5, 0.25]).double(), None, "")
    bias = torch.tensor([1.0, -0.5])
    b_i = int_bias(bias, QSpec(0.5, 3, 0, 7), w)
    assert b_i.tolist() == [4, -4]  # 1 / (0.5 * 0.5), -0.5 / (0.5 * 0.25)
    # max |x - z| = 4: channel 0: 4 * 3 + 4, channel 1: 4 * 3 + 4
    bounds = accumulator_bounds(w, QSpec(0.5, 3, 0, 7), b_i)
    assert bounds.tolist() == [16.0, 16.0]
    assert accumulator_bound(w, QSpec(0.5, 3, 0, 7), b_i) == 16


def test_dead_channels_move_to_a_coarser_scale_so_the_bias_fits_int32() -> None:
    w, bias = _stem()
    assert int(int_bias(bias, X, w).abs().max()) > 2**40  # int32 hardware cannot add it
    fit = fit_int32_bias(w, X, bias)
    b_i = int_bias(bias, X, fit)
    assert float(accumulator_bounds(fit, X, b_i).max()) <= 2**30 + 128 * 27 / 2 + 1
    assert float(accumulator_bounds(fit, X, b_i).max()) < INT32_MAX
    assert fit.storage == "int8, 2 channels at a coarser scale for an int32 bias"
    # the live channel is untouched; the dead ones by a power of two, their integers rounded
    assert torch.equal(fit.w_i[0], w.w_i[0]) and float(fit.scale[0]) == float(w.scale[0])
    factor = fit.scale / w.scale
    assert torch.equal(torch.log2(factor[1:]).round(), torch.log2(factor[1:]))
    assert torch.equal(fit.w_i[1:], torch.round(w.w_i[1:] / factor[1:, None, None, None]).long())
    # the dead channels' real weights and bias move by under 1e-3 of a ReLU6 output step
    # (6 / 255): the products' rounding is at most fan_in * 128 / 2 steps of a bias grid
    # finer than |b| / 2^29
    x = torch.randint(0, 256, (2, 3, 5, 5), generator=torch.Generator().manual_seed(1))
    off = (x - X.zero_point).double()
    before = torch.nn.functional.conv2d(off, w.w_i.double() * w.scale.view(-1, 1, 1, 1)) * X.scale
    after = torch.nn.functional.conv2d(off, fit.w_i.double() * fit.scale.view(-1, 1, 1, 1))
    after = after * X.scale + (b_i.double() * X.scale * fit.scale).view(1, -1, 1, 1)
    before = before + bias.double().view(1, -1, 1, 1)
    assert float((after - before)[:, 1:].abs().max()) < 1e-3 * 6 / 255


def test_products_that_overflow_are_left_to_the_report() -> None:
    # int16 weights on a16 activations: the products themselves exceed int32; coarsening
    # would cost real precision, so nothing moves and the layer is reported instead
    w_i = torch.full((2, 64), 30000)
    w = IntWeight(w_i, torch.tensor([1e-4, 1e-4]).double(), None, "int16")
    x = QSpec(1e-3, 32768, 0, 65535)
    bias = torch.tensor([1.0, -1.0])
    assert fit_int32_bias(w, x, bias) is w
    assert accumulator_bound(w, x, int_bias(bias, x, w)) > INT32_MAX
