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

Bias: ``bias_i32[c] = round(b[c] / (s_x s_w[c]))``.

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

__all__ = ["CODEBOOK_BITS", "IntWeight", "accumulator_bound", "int_bias", "integer_weight"]


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


def accumulator_bound(w: IntWeight, x: QSpec, bias_i: torch.Tensor | None) -> int:
    """Largest ``|acc|`` any allowed input can produce (per group for grouped scales)."""
    rows = w.w_i.shape[0]
    flat = w.w_i.reshape(rows, -1).abs()
    if w.group_size is not None:
        sums = flat.reshape(rows, -1, w.group_size).sum(-1)
    else:
        sums = flat.sum(-1, keepdim=True)
    bound = sums * x.max_abs_offset()
    if bias_i is not None:
        bound = bound + bias_i.abs().reshape(rows, 1)
    return int(bound.max())
