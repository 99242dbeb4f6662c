"""Quantized layer weights as ONNX initializers plus the nodes that dequantize them.

A weight ``W`` (output channel first, shape ``S``) of each format becomes:

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
from typing import Any

import torch

from engine.io.export._builder import GraphBuilder
from engine.io.export._tensors import FLOAT, INT4, INT8, INT16, INT32, UINT8, pack_int4, raw_bytes
from engine.quant import AffineQParams, CodebookQParams, QuantizedWeight

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
    out_shape = (shape[1], shape[0]) if flip else shape
    note = ""
    if fmt.weight in ("fp32", "fp16"):
        values = q.values.T if flip else q.values
        if fmt.weight == "fp32":
            name = b.initializer(f"{tensor}/w", FLOAT, out_shape, raw_bytes(values))
            stored = "FLOAT initializer"
        else:
            half = b.constant(values.half().contiguous(), f"{tensor}/w_f16")
            name = b.add("Cast", [half], hint=tensor, to=FLOAT)
            stored = "FLOAT16 initializer -> Cast"
    elif isinstance(q.qparams, CodebookQParams):
        assert q.codes is not None
        idx = q.codes.T if flip else q.codes
        idx_u8 = b.initializer(f"{tensor}/idx", UINT8, out_shape, raw_bytes(idx.to(torch.uint8)))
        book = b.constant(q.qparams.centroids.half(), f"{tensor}/codebook")
        book_f = b.add("Cast", [book], hint=tensor, to=FLOAT)
        idx_i32 = b.add("Cast", [idx_u8], hint=tensor, to=INT32)
        name = b.add("Gather", [book_f, idx_i32], hint=tensor, axis=0)
        k = q.qparams.centroids.numel()
        stored = f"UINT8 indices -> Cast(int32) -> Gather on a float16 codebook of {k}"
    else:
        assert isinstance(q.qparams, AffineQParams) and q.codes is not None
        name, stored, note = _affine(b, tensor, q.codes, q.qparams, fmt.bits, shape, flip=flip)
    if q.outlier_index is not None:
        name = _outliers(b, tensor, name, q, shape, flip=flip)
        stored += f" + ScatterND of {q.outlier_index.numel()} float16 outliers"
    record = WeightRecord(layer, fmt.weight, stored, b.initializer_bytes - start, note)
    return name, record


def _affine(
    b: GraphBuilder,
    tensor: str,
    codes: torch.Tensor,
    qp: AffineQParams,
    bits: int,
    shape: tuple[int, ...],
    *,
    flip: bool,
) -> tuple[str, str, str]:
    """Integer codes + DequantizeLinear; returns (value name, storage text, note)."""
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
    attrs: dict[str, Any] = {}
    if qp.group_size is not None:
        matrix = codes.reshape(shape[0], -1)
        if flip:
            matrix, scale = matrix.T, scale.T
        attrs = {"axis": 0 if flip else 1, "block_size": qp.group_size}
        stored_shape = tuple(matrix.shape)
        codes = matrix
        how = f"{type_name} codes -> DequantizeLinear(blocked, block_size={qp.group_size})"
    else:
        if flip:
            codes = codes.T
        attrs = {"axis": 1 if flip else 0}
        stored_shape = tuple(codes.shape)
        how = f"{type_name} codes -> DequantizeLinear(per channel, axis={attrs['axis']})"
    if data_type == INT4:
        raw = pack_int4(codes.contiguous(), signed=True)
    elif data_type == INT16:
        raw = raw_bytes(codes.to(torch.int16))
    else:
        raw = raw_bytes(codes.to(torch.int8))
    q_name = b.initializer(f"{tensor}/q", data_type, stored_shape, raw)
    s_name = b.initializer(f"{tensor}/scale", FLOAT, tuple(scale.shape), raw_bytes(scale))
    name = b.add("DequantizeLinear", [q_name, s_name], hint=tensor, **attrs)
    want = (shape[1], shape[0]) if flip else shape
    if stored_shape != want:
        name = b.add("Reshape", [name, b.ints(want)], hint=tensor)
        how += " -> Reshape"
    return name, how, note


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
