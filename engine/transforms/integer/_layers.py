"""Integer weights of one quantized layer, its int32 bias and its accumulator bound.

From a :class:`~engine.quant.QuantizedWeight` (output channel first), the
integer kernel of its format's scheme (:mod:`engine.quant.formats`) gives the
integers ``w_i`` and scales ``s_w``:

- ``int{b}`` (per channel or per group): the codes, scales ``s_w``;
- ``cb{K}``: the centroids quantized to int8 with one scale
  ``s_cb = max|c| / 127``, ``c_i = round(c / s_cb)``; the weight's integers are
  ``c_i[index]`` (a lookup), every channel's scale is ``s_cb``;

and, for every scheme:

- outliers (kept exactly in the simulated model) become integers at their
  channel's scale, ``round(v / s_w)``: wider than ``b`` bits but exact in the
  int32 accumulator (the bound below counts them).

Bias: ``bias_i32[c] = round(b[c] / (s_x s_w[c]))``. A channel whose weights are tiny next
to its bias -- a dead channel after batch-norm folding (``s_w`` down to ``1e-11`` on
EfficientNet-Lite2) with a bias of 1.5 -- would need ``|bias_i32|`` up to ``2^43``:
int32 hardware cannot add it. Where the bias is what overflows (``|bias_i32[c]|``
exceeds the channel's largest product sum, and both together exceed int32), the
channel's integers move to a coarser scale ``s_w' = 2^e s_w``, ``w_i' = round(w_i
2^-e)``, with the least ``e`` that brings the bound below ``2^30`` (TFLite's
converter adjusts such weight scales the same way). The weights this rounds are
negligible there: the sum they can change is below ``2^-30`` of the bias's reach on
the int32 grid, far below an output step whenever the output range holds the bias.

Worst-case accumulator: ``|acc[c]| <= max|x - z_x| * sum_k |w_i[c, k]| +
|bias_i32[c]|`` -- a true bound for every input the activation qparams allow,
tighter than the textbook ``2^(b_x + b_w - 2) * fan_in``. A layer whose bound
needs more than 32 bits is reported; it is still computed exactly (int64), so
the report says where int32 hardware would overflow.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from engine.quant import CODEBOOK_BITS, IntWeight, QuantizedWeight, scheme_for
from engine.transforms.integer._dyadic import QSpec

__all__ = [
    "CODEBOOK_BITS",
    "INT32_MAX",
    "IntWeight",
    "accumulator_bound",
    "accumulator_bounds",
    "fit_int32_bias",
    "int_bias",
    "integer_weight",
]

INT32_MAX = 2**31 - 1
_FIT_BOUND = 2.0**30
"""A channel moved to a coarser scale is brought below this bound (half of int32: the
rounding of its products and bias adds at most ``max|x'| * fan_in / 2 + 1/2`` back)."""


def integer_weight(q: QuantizedWeight) -> IntWeight | None:
    """The integers of a quantized weight; None for float formats."""
    found = scheme_for(q.fmt.spec).integer_weight(q.fmt.spec, q.quantized())
    if found is None or q.outlier_index is None:
        return found
    rows = q.values.shape[0]
    flat = found.w_i.reshape(rows, -1).clone()
    per_row = flat.shape[1]
    idx = q.outlier_index.long()
    r, col = idx // per_row, idx % per_row
    scale, group = found.scale, found.group_size
    s = scale[r] if group is None else scale[r, col // group]
    flat[r, col] = torch.round(q.values.reshape(rows, -1)[r, col].double() / s).long()
    storage = f"{found.storage}, {idx.numel()} outliers as wide integers"
    return replace(found, w_i=flat.reshape(found.w_i.shape), storage=storage)


def int_bias(bias: torch.Tensor, x: QSpec, w: IntWeight) -> torch.Tensor:
    """``round(b / (s_x s_w))`` as int64, per output channel (per-channel scales only)."""
    return torch.round(bias.double() / (x.scale * w.scale)).to(torch.int64)


def fit_int32_bias(w: IntWeight, x: QSpec, bias: torch.Tensor) -> IntWeight:
    """``w`` with the channels whose int32 bias overflows at a coarser scale (module doc).

    Per-channel scales only; ``w`` itself when no channel needs it.
    """
    rows = w.w_i.shape[0]
    products = w.w_i.reshape(rows, -1).abs().sum(-1).double() * x.max_abs_offset()
    bias_abs = (bias.double() / (x.scale * w.scale)).abs().round()
    over = (products + bias_abs > INT32_MAX) & (bias_abs > products)
    if not bool(over.any()):
        return w
    need = torch.ceil(torch.log2((products + bias_abs) / _FIT_BOUND)).clamp(min=1)
    factor = torch.where(over, torch.pow(2.0, need), torch.ones_like(need))
    view = (rows, *([1] * (w.w_i.dim() - 1)))
    w_i = torch.round(w.w_i.double() / factor.reshape(view)).to(torch.int64)
    storage = f"{w.storage}, {int(over.sum())} channels at a coarser scale for an int32 bias"
    return replace(w, w_i=w_i, scale=w.scale * factor, storage=storage)


def accumulator_bounds(w: IntWeight, x: QSpec, bias_i: torch.Tensor | None) -> torch.Tensor:
    """Largest ``|acc[c]|`` any allowed input can produce, per output channel (float64
    ``[C_out]``, exact integers; the largest group's for grouped scales)."""
    rows = w.w_i.shape[0]
    flat = w.w_i.reshape(rows, -1).abs().double()
    if w.group_size is not None:
        sums = flat.reshape(rows, -1, w.group_size).sum(-1)
    else:
        sums = flat.sum(-1, keepdim=True)
    bound = sums * x.max_abs_offset()
    if bias_i is not None:
        bound = bound + bias_i.abs().double().reshape(rows, 1)
    return bound.amax(-1)


def accumulator_bound(w: IntWeight, x: QSpec, bias_i: torch.Tensor | None) -> int:
    """Largest ``|acc|`` any allowed input can produce (per group for grouped scales)."""
    return int(accumulator_bounds(w, x, bias_i).max())
