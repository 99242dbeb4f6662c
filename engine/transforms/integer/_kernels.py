"""Integer kernels: every operator of the integer model on int64 codes.

A :class:`QTensor` is int64 codes ``q`` with per-tensor qparams; its real value
is ``s * (q - z)``. Products and sums of codes are exact integers: they are
computed here in float64 (exact below ``2^53``; the accumulator bounds the
lowering reports are far below) or int64, and never in float32 (not exact) or
int8 (wraps). Each kernel that changes scale ends in
:func:`~engine.transforms.integer._dyadic.requantize`.

Kernel -> math (``x' = x - z_x``; ``M = m 2^-k`` dyadic):

- conv / linear: ``acc_i32 = sum(x' * w_i) + bias_i32``, ``bias_i32 =
  round(b / (s_x s_w))``; ``q_o = rq(acc, M_c = s_x s_w[c] / s_o)``;
- grouped-scale linear (``int4g64``): ``acc_g`` per group of inputs, then
  ``q_o = ((sum_g acc_g m_g + B + 2^(k-1)) >> k) + z_o`` with ``m_g = round(s_x
  s_g / s_o 2^k)`` and ``B = round(b / s_o 2^k)``;
- embedding: gather the table's codes, ``q_o = rq(code, M_r = s_r / s_o)`` per row;
- add/sub: ``q_o = ((a' m_a +- b' m_b + 2^(k-1)) >> k) + z_o`` (one shared shift);
- activation matmul: ``acc = a' @ b'``, ``M = s_a s_b / s_o``;
- average pools and means: ``acc = sum of x'`` over the window, ``M = s_x / (n s_o)``;
- rescale (cat inputs, re-quantization): ``q_o = rq(x', s_x / s_o)``;
- max pool, ReLU (``max(q, z)``), clamps, reshapes: on codes, qparams unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.transforms.integer._dyadic import Dyadic, QSpec, dyadic, requantize

__all__ = [
    "QTensor",
    "add_int",
    "conv_acc",
    "exact_int",
    "grouped_linear_int",
    "linear_acc",
    "matmul_int",
    "rescale_int",
    "sum_pool_int",
]


@dataclass(frozen=True)
class QTensor:
    """int64 codes ``q`` and their per-tensor qparams."""

    q: torch.Tensor
    spec: QSpec

    def dequantize(self) -> torch.Tensor:
        return self.spec.dequantize(self.q)

    def offset(self) -> torch.Tensor:
        """``q - z`` as float64 (exact): the integer operand of products and sums."""
        return (self.q - self.spec.zero_point).double()


def exact_int(t: torch.Tensor) -> torch.Tensor:
    """float64 holding integers -> int64 (exact: the values are integers below 2^53)."""
    return torch.round(t).to(torch.int64)


def conv_acc(
    x: QTensor,
    w_i: torch.Tensor,
    *,
    stride: Sequence[int],
    padding: Sequence[int] | str,
    dilation: Sequence[int],
    groups: int,
) -> torch.Tensor:
    """int64 ``sum(x' * w_i)`` of a conv1d/conv2d (zero padding is real zero: ``x' = 0``)."""
    if w_i.dim() == 4:
        out = F.conv2d(x.offset(), w_i.double(), None, stride, padding, dilation, groups)
    else:
        out = F.conv1d(x.offset(), w_i.double(), None, stride, padding, dilation, groups)
    return exact_int(out)


def linear_acc(x: QTensor, w_i: torch.Tensor) -> torch.Tensor:
    """int64 ``x' @ w_i^T`` for ``w_i`` of shape ``[N, K]``."""
    return exact_int(x.offset() @ w_i.double().T)


def grouped_linear_int(
    x: QTensor,
    w_i: torch.Tensor,
    s_w: torch.Tensor,
    bias: torch.Tensor | None,
    out: QSpec,
    acc_bound: float,
) -> torch.Tensor:
    """A linear layer whose weight scales vary per group of inputs (``s_w``: ``[N, G]``)."""
    n, groups = s_w.shape
    xg = x.offset().reshape(*x.q.shape[:-1], groups, -1)
    wg = w_i.double().reshape(n, groups, -1)
    acc = exact_int(torch.einsum("...gk,ngk->...ng", xg, wg))  # [..., N, G]
    mult = s_w.double() * x.spec.scale / out.scale
    d = dyadic(mult, acc_bound=acc_bound * groups)
    shift = int(d.shift)  # one shift shared by the groups summed
    total = (acc * d.m).sum(-1)
    if bias is not None:
        total = total + torch.round(bias.double() / out.scale * 2.0**shift).to(torch.int64)
    total = (total + (1 << (shift - 1))) >> shift
    return (total + out.zero_point).clamp(out.qmin, out.qmax)


def add_int(a: QTensor, b: QTensor, out: QSpec, *, sign: int = 1) -> torch.Tensor:
    """Codes of ``a + sign * b`` at ``out``, both inputs rescaled by one shared shift."""
    mult = torch.tensor([a.spec.scale / out.scale, b.spec.scale / out.scale], dtype=torch.float64)
    bound = a.spec.max_abs_offset() + b.spec.max_abs_offset()
    d = dyadic(mult, acc_bound=float(bound))
    ma, mb = int(d.m[0]), int(d.m[1])
    a_off = a.q - a.spec.zero_point
    b_off = b.q - b.spec.zero_point
    acc = a_off * ma + sign * b_off * mb
    return requantize(acc, Dyadic(torch.tensor(1), d.shift), out)


def matmul_int(a: QTensor, b: QTensor, out: QSpec) -> torch.Tensor:
    """Codes of ``a @ b`` (both activations): ``rq(a' @ b', s_a s_b / s_o)``."""
    k = a.q.shape[-1]
    acc = exact_int(a.offset() @ b.offset())
    bound = float(k * a.spec.max_abs_offset() * b.spec.max_abs_offset())
    d = dyadic(a.spec.scale * b.spec.scale / out.scale, acc_bound=bound)
    return requantize(acc, d, out)


def sum_pool_int(x: QTensor, sums: torch.Tensor, count: int, out: QSpec) -> torch.Tensor:
    """Codes of a mean: ``rq(sums, s_x / (count s_o))``; ``sums`` are int64 sums of ``x'``."""
    bound = float(count * x.spec.max_abs_offset())
    d = dyadic(x.spec.scale / (count * out.scale), acc_bound=bound)
    return requantize(sums, d, out)


def rescale_int(x: QTensor, out: QSpec) -> torch.Tensor:
    """Codes of ``x`` re-expressed at ``out``: ``rq(x', s_x / s_o)`` (identity if equal)."""
    if x.spec == out:
        return x.q
    d = dyadic(x.spec.scale / out.scale, acc_bound=float(x.spec.max_abs_offset()))
    return requantize(x.q - x.spec.zero_point, d, out)
