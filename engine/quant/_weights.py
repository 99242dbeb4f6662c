"""Quantizing one layer's weight tensor to a :class:`~engine.plan.LayerFormat`.

The weight arrives output-channel-first (``[C_out, ...]``: conv ``[C_out,
C_in/groups, *k]``, linear ``[C_out, C_in]``, embedding ``[rows, dim]``) and is
seen as the matrix ``W = w.reshape(C_out, -1)``. Uniform formats get one scale
per row (or per group of inputs), codebook formats one k-means codebook per
layer. ``nearest`` rounds each weight on its own; ``gptq`` compensates
rounding errors through the layer's input Hessian (:mod:`engine.quant._gptq`),
one Hessian per conv group. With ``outliers = n`` the ``n`` largest-magnitude
weights are set aside before the scales are chosen and kept exactly (as
float16) in the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.quant._affine import (
    AffineQParams,
    choose_qparams_affine,
    fake_quantize_affine,
    quantize_affine,
)
from engine.quant._codebook import (
    CodebookQParams,
    choose_qparams_codebook,
    fake_quantize_codebook,
    quantize_codebook,
)
from engine.quant._gptq import QuantizeColumn, gptq_quantize
from engine.quant._plan import LayerFormat

__all__ = ["QuantizedWeight", "quantize_weight"]


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """One layer's quantized weight.

    Attributes:
        fmt: the format it was quantized to.
        values: float32, the weight's shape: what the simulated model computes with.
        codes: integer codes, the weight's shape (signed affine codes, or codebook
            indices); None for float formats.
        qparams: the affine qparams or codebook; None for float formats.
        outlier_index: flat indices of the weights kept exactly (int64), or None.
    """

    fmt: LayerFormat
    values: torch.Tensor
    codes: torch.Tensor | None = None
    qparams: AffineQParams | CodebookQParams | None = None
    outlier_index: torch.Tensor | None = None


def quantize_weight(
    w: torch.Tensor,
    fmt: LayerFormat,
    *,
    hessians: list[torch.Tensor] | None = None,
) -> QuantizedWeight:
    """Quantize ``w`` (output channel first) to ``fmt``.

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
    if fmt.weight == "fp32":
        return QuantizedWeight(fmt, w.clone())
    if fmt.weight == "fp16":
        return QuantizedWeight(fmt, w.half().float())
    matrix = w.reshape(w.shape[0], -1)
    outliers = _outliers(matrix, fmt.outliers)
    kept = matrix.clone()
    if outliers is not None:
        kept.view(-1)[outliers] = 0.0
    qp = _choose(kept, fmt)
    if fmt.rounding == "gptq":
        if not hessians:
            raise ValueError("gptq rounding needs the layer's input Hessians")
        values = _gptq(kept, qp, hessians)
    elif isinstance(qp, CodebookQParams):
        values = fake_quantize_codebook(kept, qp)
    else:
        values = fake_quantize_affine(kept, qp)
    codes = (
        quantize_codebook(values, qp)
        if isinstance(qp, CodebookQParams)
        else quantize_affine(values, qp)
    )
    if outliers is not None:
        values.view(-1)[outliers] = matrix.view(-1)[outliers].half().float()
    return QuantizedWeight(fmt, values.reshape(w.shape), codes.reshape(w.shape), qp, outliers)


def _choose(matrix: torch.Tensor, fmt: LayerFormat) -> AffineQParams | CodebookQParams:
    if fmt.codebook_size is not None:
        return choose_qparams_codebook(matrix, fmt.codebook_size)
    return choose_qparams_affine(
        matrix, bits=fmt.bits, axis=0, group_size=fmt.group_size, method=fmt.scale
    )


def _outliers(matrix: torch.Tensor, n: int) -> torch.Tensor | None:
    if n == 0:
        return None
    n = min(n, matrix.numel())
    return torch.topk(matrix.abs().reshape(-1), n).indices.sort().values


def _gptq(
    matrix: torch.Tensor,
    qp: AffineQParams | CodebookQParams,
    hessians: list[torch.Tensor],
) -> torch.Tensor:
    """Run GPTQ per conv group; each column is fake-quantized with its row's scales."""
    rows = matrix.shape[0]
    if rows % len(hessians):
        raise ValueError(f"{len(hessians)} Hessians do not split {rows} output channels")
    per = rows // len(hessians)
    out = torch.empty_like(matrix)
    for g, h in enumerate(hessians):
        sl = slice(g * per, (g + 1) * per)
        out[sl] = gptq_quantize(matrix[sl], h, _column_quantizer(qp, sl))
    return out


def _column_quantizer(qp: AffineQParams | CodebookQParams, rows: slice) -> QuantizeColumn:
    """Fake-quantize one column of the rows ``rows`` with their own scales.

    For uniform formats this is the arithmetic of :func:`fake_quantize_affine`
    with ``z = 0`` -- ``round(v * (1/s)).clamp(qmin, qmax) * s`` -- without
    building qparams for each of the ``n`` columns.
    """
    if isinstance(qp, CodebookQParams):
        return lambda values, j: fake_quantize_codebook(values, qp)
    scale = qp.scale[rows]
    inv, lo, hi, group = 1.0 / scale, qp.qmin, qp.qmax, qp.group_size
    if group is None:
        return lambda values, j: torch.round(values * inv).clamp(lo, hi) * scale
    return lambda values, j: (
        torch.round(values * inv[:, j // group]).clamp(lo, hi) * scale[:, j // group]
    )
