"""The ternary weight scheme: ``ternary``, weights in ``{-a, 0, +a}`` per output channel.

Ternary weight networks (Li, Zhang & Liu, arXiv:1605.04711): for each output
channel (row ``r`` of the matrix ``[rows, n]``)::

    threshold  d_r = 0.7 * mean_k |w_rk|
    codes      t_rk = sign(w_rk) if |w_rk| > d_r else 0          (in {-1, 0, 1})
    scale      a_r = mean of |w_rk| over the k with |w_rk| > d_r  (1 if there are none)
    values     w_hat_rk = a_r * t_rk

- stored (``model.mpq``): ``W.codes`` -- ``t + 1`` bit-packed at 2 bits;
  ``W.scale`` -- float32 ``[C_out]``; bytes ``ceil(2n / 8) + 4 C_out``;
- integer kernel: ``w_i = t``, ``s_w = a`` (float64): exactly the simulated weight;
- ONNX: ``t`` as INT8 and ``DequantizeLinear(t, a, axis=0)`` (axis 1 when flipped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from engine.quant import QuantizeColumn, ScaleMethod
from engine.quant._onnx import FLOAT, INT8, OnnxGraph, le_bytes
from engine.quant._scheme import (
    CodeScheme,
    IntWeight,
    OnnxWeight,
    Quantized,
    WeightFormat,
    codes_nbytes,
    pack_codes,
    unpack_codes,
)

__all__ = ["TernaryQParams", "TernaryScheme"]

BITS = 2
DELTA = 0.7


@dataclass(frozen=True, eq=False)
class TernaryQParams:
    """Per-row scale ``a`` and threshold ``d`` (float32 ``[rows]``)."""

    scale: torch.Tensor
    threshold: torch.Tensor


class TernaryScheme(CodeScheme[TernaryQParams]):
    """Weights in ``{-a, 0, +a}``, one ``a`` per output channel."""

    name = "ternary"
    qparams_type = TernaryQParams
    syntax = "ternary"
    parts = (".codes", ".scale")

    def parse(self, text: str) -> WeightFormat | None:
        return WeightFormat(text, self.name, BITS) if text == "ternary" else None

    def choose_qparams(
        self, matrix: torch.Tensor, fmt: WeightFormat, *, scale: ScaleMethod
    ) -> TernaryQParams:
        mag = matrix.abs()
        threshold = DELTA * mag.mean(1)
        above = mag > threshold[:, None]
        count = above.sum(1)
        total = (mag * above).sum(1)
        a = torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total))
        return TernaryQParams(a.float(), threshold.float())

    def fake_quantize(self, x: torch.Tensor, qp: TernaryQParams) -> torch.Tensor:
        return self.quantize_codes(x, qp).float() * qp.scale[:, None]

    def quantize_codes(self, x: torch.Tensor, qp: TernaryQParams) -> torch.Tensor:
        keep = x.abs() > qp.threshold[:, None]
        return (torch.sign(x) * keep).to(torch.int32)

    def column_quantizer(self, qp: TernaryQParams, rows: slice) -> QuantizeColumn:
        a, d = qp.scale[rows], qp.threshold[rows]
        return lambda values, j: torch.sign(values) * (values.abs() > d) * a

    def pack(
        self, w: str, fmt: WeightFormat, q: Quantized[TernaryQParams]
    ) -> dict[str, torch.Tensor]:
        assert q.codes is not None and q.qparams is not None
        return {
            f"{w}.codes": pack_codes(q.codes.long() + 1, BITS),
            f"{w}.scale": q.qparams.scale.contiguous(),
        }

    def unpack(
        self,
        stored: Mapping[str, torch.Tensor],
        w: str,
        fmt: WeightFormat,
        shape: tuple[int, ...],
    ) -> Quantized[TernaryQParams]:
        t = unpack_codes(stored[f"{w}.codes"], BITS, math.prod(shape)) - 1
        a = stored[f"{w}.scale"]
        values = t.reshape(shape[0], -1).float() * a[:, None]
        # any threshold in (0, a) maps the stored values back to their codes
        qp = TernaryQParams(a, a / 2)
        return Quantized(values.reshape(shape), t.reshape(shape).to(torch.int32), qp)

    def nbytes(self, fmt: WeightFormat, shape: tuple[int, ...]) -> int:
        return codes_nbytes(math.prod(shape), BITS) + 4 * shape[0]

    def integer_weight(self, fmt: WeightFormat, q: Quantized[TernaryQParams]) -> IntWeight:
        assert q.codes is not None and q.qparams is not None
        return IntWeight(q.codes.long(), q.qparams.scale.double(), None, "ternary codes")

    def emit_onnx(
        self,
        g: OnnxGraph,
        tensor: str,
        fmt: WeightFormat,
        q: Quantized[TernaryQParams],
        *,
        flip: bool,
    ) -> OnnxWeight:
        assert q.codes is not None and q.qparams is not None
        t = q.codes.T if flip else q.codes
        t_name = g.initializer(f"{tensor}/q", INT8, tuple(t.shape), le_bytes(t.to(torch.int8)))
        a = q.qparams.scale
        a_name = g.initializer(f"{tensor}/scale", FLOAT, tuple(a.shape), le_bytes(a))
        name = g.add("DequantizeLinear", [t_name, a_name], hint=tensor, axis=1 if flip else 0)
        return OnnxWeight(name, "INT8 codes in [-1, 1] -> DequantizeLinear(per channel)")
