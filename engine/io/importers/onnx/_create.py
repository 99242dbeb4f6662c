"""ONNX operators that make tensors from shapes or scalars -> constants folded at import.

``ConstantOfShape``, ``Range``, ``Size`` and ``NonZero`` read only shapes or constants in the
models torch exports (the ``ConstantOfShape -> Concat -> Pad`` chains of TF-style "same"
padding, ``Range`` over a static length for position ids), so each becomes a constant. A
``Range`` whose bounds, or a ``NonZero`` whose input, is known only at run time is refused:
the output's shape would depend on the data, which the IR cannot express.
"""

from __future__ import annotations

import torch

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_tensor, dtype_name
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode
from engine.ir import DType

__all__ = ["CREATE_CONVERTERS"]


def constant_of_shape(b: GraphBuilder, n: OnnxNode) -> Val:
    """A tensor of shape ``input`` filled with the one-element ``value`` (default float 0)."""
    shape = b.ints(n, 0, "shape")
    if shape is None:
        raise CorruptFileError(f"ConstantOfShape {n.name!r} lacks its shape input")
    if min(shape, default=0) < 0:
        raise CorruptFileError(f"ConstantOfShape {n.name!r} has negative dims in {shape}")
    tensor = attr_tensor(n, "value")
    value = torch.zeros(1) if tensor is None else b.load(tensor)
    if value.numel() != 1:
        raise CorruptFileError(
            f"ConstantOfShape {n.name!r} has a value of {value.numel()} elements; the spec says 1"
        )
    fill = value.reshape(()).item()
    return b.emit("aten.full.default", shape, fill, dtype=DType(dtype_name(value.dtype)))


def range_(b: GraphBuilder, n: OnnxNode) -> Val:
    """``arange(start, limit, delta)``: ``max(ceil((limit - start) / delta), 0)`` elements."""
    bounds = [b.const(n, i, what) for i, what in enumerate(("start", "limit", "delta"))]
    if any(t is None or t.numel() != 1 for t in bounds):
        raise CorruptFileError(f"Range {n.name!r} needs three scalar inputs")
    start, limit, delta = (t.reshape(()).item() for t in bounds if t is not None)
    if delta == 0:
        raise CorruptFileError(f"Range {n.name!r} has delta 0")
    dtype = b.input(n, 0).dtype
    return b.emit("aten.arange.start_step", start, limit, delta, dtype=DType(dtype_name(dtype)))


def size(b: GraphBuilder, n: OnnxNode) -> Val:
    """The number of elements, an int64 scalar constant."""
    return b.constant(torch.tensor(b.input(n, 0).meta.numel(), dtype=torch.int64), n.outputs[0])


def non_zero(b: GraphBuilder, n: OnnxNode) -> Val:
    """Indices of the non-zero elements, ``[rank, count]`` int64; only of a constant input."""
    x = b.input(n, 0)
    if x.const is None:
        raise UnsupportedOpsError(
            f"NonZero {n.name!r} reads a value computed at run time: its output's shape "
            "depends on the data, which MPQ cannot represent. Rewrite the model to use a "
            "mask (torch.where) instead of indexing with nonzero()/boolean masks."
        )
    b.charge(x.const.numel() * x.dim() * 8)
    return b.constant(torch.nonzero(x.const).T.contiguous(), n.outputs[0])


CREATE_CONVERTERS = {
    "ConstantOfShape": constant_of_shape,
    "Range": range_,
    "Size": size,
    "NonZero": non_zero,
}
