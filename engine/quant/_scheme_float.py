"""The float weight scheme: ``fp16`` and ``fp32``, weights that are not quantized.

- quantize: ``fp32`` keeps the weight; ``fp16`` rounds it to float16 (round to
  nearest even) and computes with it as float32. No codes, no qparams.
- stored (``model.mpq``): ``W`` itself, as float16 or float32 (bytes ``2n`` / ``4n``);
- integer kernel: none (the layer runs as a float island);
- ONNX: ``fp32`` a FLOAT initializer; ``fp16`` a FLOAT16 initializer and ``Cast<float>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from engine.quant._affine import ScaleMethod
from engine.quant._onnx import FLOAT, OnnxGraph, le_bytes
from engine.quant._scheme import IntWeight, OnnxWeight, Quantized, WeightFormat, WeightScheme

__all__ = ["FloatScheme"]

_BITS = {"fp16": 16, "fp32": 32}


class FloatScheme(WeightScheme[None]):
    """Float weights: float16 (rounded) or float32 (as they are)."""

    name = "float"
    qparams_type = None
    syntax = "fp16, fp32"
    parts = ("",)

    def parse(self, text: str) -> WeightFormat | None:
        bits = _BITS.get(text)
        return None if bits is None else WeightFormat(text, self.name, bits, is_float=True)

    def quantize(
        self,
        matrix: torch.Tensor,
        fmt: WeightFormat,
        *,
        scale: ScaleMethod = "max",
        hessians: list[torch.Tensor] | None = None,
        qparams: None = None,
    ) -> Quantized[None]:
        return Quantized(matrix.half().float() if fmt.bits == 16 else matrix.clone())

    def pack(self, w: str, fmt: WeightFormat, q: Quantized[None]) -> dict[str, torch.Tensor]:
        return {w: q.values.half() if fmt.bits == 16 else q.values.contiguous()}

    def unpack(
        self,
        stored: Mapping[str, torch.Tensor],
        w: str,
        fmt: WeightFormat,
        shape: tuple[int, ...],
    ) -> Quantized[None]:
        return Quantized(stored[w].float() if fmt.bits == 16 else stored[w])

    def nbytes(self, fmt: WeightFormat, shape: tuple[int, ...]) -> int:
        return fmt.bits // 8 * math.prod(shape)

    def integer_weight(self, fmt: WeightFormat, q: Quantized[None]) -> IntWeight | None:
        return None

    def emit_onnx(
        self,
        g: OnnxGraph,
        tensor: str,
        fmt: WeightFormat,
        q: Quantized[None],
        *,
        flip: bool,
    ) -> OnnxWeight:
        values = q.values.T if flip else q.values
        if fmt.bits == 32:
            name = g.initializer(f"{tensor}/w", FLOAT, tuple(values.shape), le_bytes(values))
            return OnnxWeight(name, "FLOAT initializer")
        half = g.constant(values.half().contiguous(), f"{tensor}/w_f16")
        name = g.add("Cast", [half], hint=tensor, to=FLOAT)
        return OnnxWeight(name, "FLOAT16 initializer -> Cast")
