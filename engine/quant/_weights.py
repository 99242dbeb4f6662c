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

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch

from engine.quant._gptq import gptq_quantize_stacked
from engine.quant._plan import LayerFormat
from engine.quant.formats import CodeScheme, Quantized, scheme_for

__all__ = ["QuantizedWeight", "quantize_weight", "quantize_weights"]


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
    qparams: object | None = None,
) -> QuantizedWeight:
    """Quantize ``w`` (output channel first) to ``fmt`` with the scheme of its format.

    Args:
        w: the float weight; not modified.
        fmt: the target format.
        hessians: for ``gptq``, the layer's input Hessians, one per conv group
            (``[n, n]`` with ``n = w[0].numel()``); rows ``g * C_out/G ...`` use
            the ``g``-th.
        qparams: the qparams of ``w`` in the same format but the other rounding
            (both roundings start from the same qparams; passing them skips
            choosing them again, which for ``mse`` scales or codebooks is most of a
            ``nearest`` quantization).

    Raises:
        ValueError: ``gptq`` without Hessians, or a group size that does not
            divide the inputs per channel.
    """
    return quantize_weights(w, [fmt], hessians=hessians, qparams=[qparams])[0]


def quantize_weights(
    w: torch.Tensor,
    fmts: Sequence[LayerFormat],
    *,
    hessians: list[torch.Tensor] | None = None,
    qparams: Sequence[object | None] | None = None,
) -> list[QuantizedWeight]:
    """:func:`quantize_weight` of ``w`` in each of ``fmts`` (``qparams``: one or None each).

    The ``gptq`` formats of code schemes sharing an outlier count are rounded in one
    stacked GPTQ pass (:func:`~engine.quant._gptq.gptq_quantize_stacked`): the search
    quantizes each layer in a dozen formats, and GPTQ's column loop is its cost.
    """
    w = w.detach().float()
    given = list(qparams) if qparams is not None else [None] * len(fmts)
    matrix = w.reshape(w.shape[0], -1)
    out: list[QuantizedWeight | None] = [None] * len(fmts)
    stacks: dict[int, list[int]] = {}
    for i, fmt in enumerate(fmts):
        if fmt.rounding == "gptq" and not hessians:
            raise ValueError("gptq rounding needs the layer's input Hessians")
        scheme = scheme_for(fmt.spec)
        if fmt.rounding == "gptq" and isinstance(scheme, CodeScheme):
            stacks.setdefault(fmt.outliers, []).append(i)
            continue
        outliers, kept = _kept(matrix, fmt.outliers)
        gptq = hessians if fmt.rounding == "gptq" else None
        q = scheme.quantize(kept, fmt.spec, scale=fmt.scale, hessians=gptq, qparams=given[i])
        out[i] = _result(w, matrix, fmt, q, outliers)
    for count, members in stacks.items():
        assert hessians is not None
        outliers, kept = _kept(matrix, count)
        schemes = [cast(CodeScheme[Any], scheme_for(fmts[i].spec)) for i in members]
        qps = [
            given[i]
            if given[i] is not None
            else s.choose_qparams(kept, fmts[i].spec, scale=fmts[i].scale)
            for s, i in zip(schemes, members, strict=True)
        ]
        quantizers = [
            functools.partial(s.column_quantizer, qp) for s, qp in zip(schemes, qps, strict=True)
        ]
        values = gptq_quantize_stacked(kept, hessians, quantizers)
        for s, i, qp, v in zip(schemes, members, qps, values, strict=True):
            out[i] = _result(
                w, matrix, fmts[i], Quantized(v, s.quantize_codes(v, qp), qp), outliers
            )
    return [q for q in out if q is not None]


def _kept(matrix: torch.Tensor, n: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The ``n`` outliers' flat indices (None for 0) and the matrix with them zeroed."""
    outliers = _outliers(matrix, n)
    if outliers is None:
        return None, matrix
    kept = matrix.clone()
    kept.view(-1)[outliers] = 0.0
    return outliers, kept


def _result(
    w: torch.Tensor,
    matrix: torch.Tensor,
    fmt: LayerFormat,
    q: Quantized[Any],
    outliers: torch.Tensor | None,
) -> QuantizedWeight:
    """The quantized weight in ``w``'s shape, outliers put back exactly (as float16)."""
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
