"""Quantizing one layer's weight tensor to a :class:`~engine.quant.LayerFormat`.

The weight arrives output-channel-first (``[C_out, ...]``: conv ``[C_out,
C_in/groups, *k]``, linear ``[C_out, C_in]``, embedding ``[rows, dim]``) and is
seen as the matrix ``W = w.reshape(C_out, -1)``. Uniform formats get one scale
per row (or per group of inputs), codebook formats one k-means codebook per
layer. ``nearest`` rounds each weight on its own; ``gptq`` compensates
rounding errors through the layer's input Hessian (:mod:`engine.quant._gptq`),
one Hessian per conv group. What is scheme-specific (choosing qparams,
rounding, codes) is done by the format's handler in
:mod:`engine.quant.formats`. With ``outliers = n`` the ``n`` largest-magnitude
weights are set aside before the scales are chosen and kept exactly (as
float16) in the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from engine.quant._plan import LayerFormat
from engine.quant.formats import Quantized, scheme_for

__all__ = ["QuantizedWeight", "quantize_weight"]


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """One layer's quantized weight.

    Attributes:
        fmt: the format it was quantized to.
        values: float32, the weight's shape: what the simulated model computes with.
        codes: integer codes, the weight's shape (signed affine codes, or codebook
            indices); None for float formats.
        qparams: the qparams of the format's scheme (affine scales, a codebook);
            None for float formats.
        outlier_index: flat indices of the weights kept exactly (int64), or None.
    """

    fmt: LayerFormat
    values: torch.Tensor
    codes: torch.Tensor | None = None
    qparams: object | None = None
    outlier_index: torch.Tensor | None = None

    def quantized(self) -> Quantized[Any]:
        """Values, codes and qparams as the format's scheme takes them."""
        return Quantized(self.values, self.codes, self.qparams)


def quantize_weight(
    w: torch.Tensor,
    fmt: LayerFormat,
    *,
    hessians: list[torch.Tensor] | None = None,
) -> QuantizedWeight:
    """Quantize ``w`` (output channel first) to ``fmt`` with the scheme of its format.

    Args:
        w: the float weight; not modified.
        fmt: the target format.
        hessians: for ``gptq``, the layer's input Hessians, one per conv group
            (``[n, n]`` with ``n = w[0].numel()``); rows ``g * C_out/G ...`` use
            the ``g``-th.

    Raises:
        ValueError: ``gptq`` without Hessians, or a group size that does not
            divide the inputs per channel.
    """
    w = w.detach().float()
    gptq = fmt.rounding == "gptq"
    if gptq and not hessians:
        raise ValueError("gptq rounding needs the layer's input Hessians")
    matrix = w.reshape(w.shape[0], -1)
    outliers = _outliers(matrix, fmt.outliers)
    kept = matrix
    if outliers is not None:
        kept = matrix.clone()
        kept.view(-1)[outliers] = 0.0
    spec = fmt.spec
    q = scheme_for(spec).quantize(kept, spec, scale=fmt.scale, hessians=hessians if gptq else None)
    values = q.values
    if outliers is not None:
        values.view(-1)[outliers] = matrix.view(-1)[outliers].half().float()
    codes = None if q.codes is None else q.codes.reshape(w.shape)
    return QuantizedWeight(fmt, values.reshape(w.shape), codes, q.qparams, outliers)


def _outliers(matrix: torch.Tensor, n: int) -> torch.Tensor | None:
    if n == 0:
        return None
    n = min(n, matrix.numel())
    return torch.topk(matrix.abs().reshape(-1), n).indices.sort().values
