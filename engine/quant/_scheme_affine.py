"""The affine weight scheme: ``int{b}`` (per channel) and ``int{b}g{G}`` (per group).

Symmetric codes ``q`` in ``[-2^(b-1), 2^(b-1) - 1]`` with ``z = 0`` and one
scale ``s`` per output channel, or per group of ``G`` consecutive inputs of a
channel (:mod:`engine.quant._affine`); ``W = q * s``.

- parse: ``int{b}`` with b in 2..8 or 16, optionally ``g{G}`` with G in {32, 64, 128};
- stored (``model.mpq``): ``W.codes`` -- ``q + 2^(b-1)`` bit-packed (b <= 8) or ``q``
  as int16 (b = 16); ``W.scale`` -- float32 ``[C_out]`` or ``[C_out, n/G]``;
- bytes: ``ceil(n b / 8)`` (``2n`` at 16 bits) ``+ 4 C_out (n/G)``;
- integer kernel: ``w_i = q``, ``s_w = s`` (float64) -- exactly the simulated weight;
- ONNX: the codes as INT8 (INT4 at 4 bits, INT16 at 16; other widths INT8 holding
  their own range) and ``DequantizeLinear(q, s, axis)``; grouped: the matrix
  ``[C_out, n]`` and a blocked ``DequantizeLinear(axis=1, block_size=G)``, then
  ``Reshape`` to the weight's shape (a conv's groups run across its flattened
  kernel). ``flip`` transposes codes and scales and moves the axis instead of
  adding a Transpose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from engine.errors import InvalidPlanError
from engine.quant._affine import (
    AffineQParams,
    ScaleMethod,
    choose_qparams_affine,
    fake_quantize_affine,
    quantize_affine,
    signed_range,
)
from engine.quant._gptq import QuantizeColumn
from engine.quant._onnx import FLOAT, INT4, INT8, INT16, OnnxGraph, int4_bytes, le_bytes
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

__all__ = ["AffineScheme"]

_INT = re.compile(r"int(\d+)(?:g(\d+))?")
_BITS = frozenset(range(2, 9)) | {16}
_GROUPS = frozenset({32, 64, 128})


class AffineScheme(CodeScheme[AffineQParams]):
    """Uniform symmetric integer weights, per channel or per group."""

    name = "affine"
    qparams_type = AffineQParams
    syntax = "int2..int8, int16, int4g64 (grouped)"
    parts = (".codes", ".scale")

    def parse(self, text: str) -> WeightFormat | None:
        m = _INT.fullmatch(text)
        if m is None:
            return None
        bits, group = int(m[1]), None if m[2] is None else int(m[2])
        if bits not in _BITS:
            raise InvalidPlanError(f"weight format {text!r}: int bits must be 2..8 or 16")
        if group is not None and group not in _GROUPS:
            raise InvalidPlanError(f"weight format {text!r}: group size must be 32, 64 or 128")
        return WeightFormat(text, self.name, bits, group_size=group)

    def choose_qparams(
        self, matrix: torch.Tensor, fmt: WeightFormat, *, scale: ScaleMethod
    ) -> AffineQParams:
        return choose_qparams_affine(
            matrix, bits=fmt.bits, axis=0, group_size=fmt.group_size, method=scale
        )

    def fake_quantize(self, x: torch.Tensor, qp: AffineQParams) -> torch.Tensor:
        return fake_quantize_affine(x, qp)

    def quantize_codes(self, x: torch.Tensor, qp: AffineQParams) -> torch.Tensor:
        return quantize_affine(x, qp)

    def column_quantizer(self, qp: AffineQParams, rows: slice) -> QuantizeColumn:
        """``round(v * (1/s)).clamp(qmin, qmax) * s`` with the rows' scales.

        The arithmetic of :func:`fake_quantize_affine` with ``z = 0``, without
        building qparams for each of the ``n`` columns.
        """
        scale = qp.scale[rows]
        inv, lo, hi, group = 1.0 / scale, qp.qmin, qp.qmax, qp.group_size
        if group is None:
            return lambda values, j: torch.round(values * inv).clamp(lo, hi) * scale
        return lambda values, j: (
            torch.round(values * inv[:, j // group]).clamp(lo, hi) * scale[:, j // group]
        )

    def pack(
        self, w: str, fmt: WeightFormat, q: Quantized[AffineQParams]
    ) -> dict[str, torch.Tensor]:
        assert q.codes is not None and q.qparams is not None
        return {
            f"{w}.scale": q.qparams.scale.contiguous(),
            f"{w}.codes": pack_codes(q.codes.long() + 2 ** (fmt.bits - 1), fmt.bits),
        }

    def unpack(
        self,
        stored: Mapping[str, torch.Tensor],
        w: str,
        fmt: WeightFormat,
        shape: tuple[int, ...],
    ) -> Quantized[AffineQParams]:
        codes = unpack_codes(stored[f"{w}.codes"], fmt.bits, math.prod(shape))
        signed = codes - 2 ** (fmt.bits - 1)
        scale = stored[f"{w}.scale"]
        matrix = signed.reshape(shape[0], -1).float()
        group = matrix.shape[1] // scale.shape[1] if scale.dim() == 2 else None
        qmin, qmax = signed_range(fmt.bits)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        qp = AffineQParams(scale, zero, qmin, qmax, 0, group)
        full = scale.repeat_interleave(group, dim=1) if group is not None else scale[:, None]
        values = matrix * full  # z = 0: the same float32 product as fake-quant
        return Quantized(values.reshape(shape), signed.reshape(shape).to(torch.int32), qp)

    def nbytes(self, fmt: WeightFormat, shape: tuple[int, ...]) -> int:
        n = math.prod(shape)
        groups = (n // shape[0]) // fmt.group_size if fmt.group_size else 1
        return codes_nbytes(n, fmt.bits) + 4 * shape[0] * groups

    def integer_weight(self, fmt: WeightFormat, q: Quantized[AffineQParams]) -> IntWeight:
        assert q.codes is not None and q.qparams is not None
        qp = q.qparams
        return IntWeight(q.codes.to(torch.int64), qp.scale.double(), qp.group_size, fmt.text)

    def emit_onnx(
        self,
        g: OnnxGraph,
        tensor: str,
        fmt: WeightFormat,
        q: Quantized[AffineQParams],
        *,
        flip: bool,
    ) -> OnnxWeight:
        assert q.codes is not None and q.qparams is not None
        return emit_dequantize_linear(g, tensor, q.codes, q.qparams, fmt.bits, flip=flip)


def emit_dequantize_linear(
    g: OnnxGraph,
    tensor: str,
    codes: torch.Tensor,
    qp: AffineQParams,
    bits: int,
    *,
    flip: bool,
) -> OnnxWeight:
    """Integer codes (the weight's shape) + ``DequantizeLinear`` with the scales of ``qp``."""
    shape = tuple(codes.shape)
    note = ""
    if bits == 4:
        data_type, type_name = INT4, "INT4"
    elif bits == 16:
        data_type, type_name = INT16, "INT16"
    else:
        data_type, type_name = INT8, "INT8"
        if bits != 8:
            note = f"int{bits} stored as int8 restricted to [{qp.qmin}, {qp.qmax}]"
    scale = qp.scale
    attrs: dict[str, Any]
    if qp.group_size is not None:
        matrix = codes.reshape(shape[0], -1)
        if flip:
            matrix, scale = matrix.T, scale.T
        attrs = {"axis": 0 if flip else 1, "block_size": qp.group_size}
        codes = matrix
        how = f"{type_name} codes -> DequantizeLinear(blocked, block_size={qp.group_size})"
    else:
        if flip:
            codes = codes.T
        attrs = {"axis": 1 if flip else 0}
        how = f"{type_name} codes -> DequantizeLinear(per channel, axis={attrs['axis']})"
    stored_shape = tuple(codes.shape)
    if data_type == INT4:
        raw = int4_bytes(codes.contiguous())
    elif data_type == INT16:
        raw = le_bytes(codes.to(torch.int16))
    else:
        raw = le_bytes(codes.to(torch.int8))
    q_name = g.initializer(f"{tensor}/q", data_type, stored_shape, raw)
    s_name = g.initializer(f"{tensor}/scale", FLOAT, tuple(scale.shape), le_bytes(scale))
    name = g.add("DequantizeLinear", [q_name, s_name], hint=tensor, **attrs)
    want = (shape[1], shape[0]) if flip else shape
    if stored_shape != want:
        name = g.add("Reshape", [name, g.ints(want)], hint=tensor)
        how += " -> Reshape"
    return OnnxWeight(name, how, note)
