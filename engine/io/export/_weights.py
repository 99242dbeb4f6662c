"""Quantized layer weights as ONNX initializers plus the nodes that dequantize them.

A weight ``W`` (output channel first, shape ``S``) becomes what the ONNX
emitter of its format's scheme writes (:mod:`engine.quant.formats`; the builder
is passed to it as an :class:`~engine.quant.formats.OnnxGraph`):

- ``int{b}`` per channel: codes ``q`` as an integer initializer and
  ``DequantizeLinear(q, s, axis)``: ``W = q * s[c]`` along the output-channel
  axis (zero point 0, float32 product: bit-identical to the simulated weight);
- ``int{b}g{G}``: the codes as the matrix ``[C_out, N]`` and a blocked
  ``DequantizeLinear(axis=1, block_size=G)`` with scales ``[C_out, N/G]``, then
  ``Reshape`` to ``S`` (a conv's groups run across its flattened kernel, so no
  single axis of ``S`` holds them);
- storage: int8 as INT8, int4 as INT4 (two per byte), int16 as INT16, the other
  widths (2, 3, 5, 6, 7 bits) as INT8 holding only their own range;
- ``cb{K}``: uint8 indices ``i`` and the float16 codebook ``c``:
  ``W = Gather(Cast<float>(c), Cast<int32>(i))`` (onnxruntime rejects uint8
  indices; the indices are stored in ``W``'s shape, so no reshape is needed);
- ``fp16``: a float16 initializer and ``Cast<float>``; ``fp32``: float32 as is;
- outliers (kept exactly, float16): ``ScatterND(W, idx, Cast<float>(v))``.

A 2-D weight may be asked for transposed (``[in, out]``, the MatMul operand of
a linear layer): codes and scales are transposed and the dequantization axis
moves to 1 (per channel) or 0 (blocked), so no Transpose node runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.io.export._builder import GraphBuilder
from engine.io.export._tensors import FLOAT
from engine.quant import QuantizedWeight, scheme_for

__all__ = ["WeightRecord", "emit_weight"]


@dataclass(frozen=True)
class WeightRecord:
    """How one layer's weight is stored in the ONNX file."""

    layer: str
    format: str
    stored_as: str
    nbytes: int
    note: str = ""


def emit_weight(
    b: GraphBuilder,
    layer: str,
    tensor: str,
    q: QuantizedWeight,
    *,
    flip: bool,
) -> tuple[str, WeightRecord]:
    """Emit the initializers and nodes giving layer ``layer``'s float weight.

    Args:
        b: the graph under construction.
        layer: the layer's name (for the record).
        tensor: the IR tensor name (prefix of the ONNX names).
        q: the quantized weight, output channel first.
        flip: produce the 2-D transpose ``[in, out]`` of the weight.

    Returns:
        The name of the float32 weight value and the record of its storage.
    """
    fmt, shape = q.fmt, tuple(q.values.shape)
    if flip and len(shape) != 2:
        raise ValueError(f"only 2-D weights can be transposed, {tensor!r} is {shape}")
    start = b.initializer_bytes
    emitted = scheme_for(fmt.spec).emit_onnx(b, tensor, fmt.spec, q.quantized(), flip=flip)
    name, stored = emitted.name, emitted.stored
    if q.outlier_index is not None:
        name = _outliers(b, tensor, name, q, shape, flip=flip)
        stored += f" + ScatterND of {q.outlier_index.numel()} float16 outliers"
    record = WeightRecord(layer, fmt.weight, stored, b.initializer_bytes - start, emitted.note)
    return name, record


def _outliers(
    b: GraphBuilder,
    tensor: str,
    dense: str,
    q: QuantizedWeight,
    shape: tuple[int, ...],
    *,
    flip: bool,
) -> str:
    """``ScatterND`` the exact (float16) outlier values into the dequantized weight."""
    assert q.outlier_index is not None
    flat = q.outlier_index.long()
    coords = []
    rest = flat
    for d in reversed(shape):
        coords.append(rest % d)
        rest = rest // d
    index = torch.stack(list(reversed(coords)), dim=1)  # [k, rank], output channel first
    if flip:
        index = index.flip(1)
    values = q.values.reshape(-1)[flat].half()
    idx = b.constant(index.contiguous(), f"{tensor}/outlier_index")
    val = b.add("Cast", [b.constant(values, f"{tensor}/outlier_value")], hint=tensor, to=FLOAT)
    return b.add("ScatterND", [dense, idx, val], hint=tensor)
