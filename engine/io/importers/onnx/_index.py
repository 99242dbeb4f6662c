"""ONNX indexing, splitting and scan operators -> ATen.

``Split`` has one output per piece: each becomes its own ``aten.slice.Tensor`` node and is
bound to its ONNX output name here (the importer binds only the first output itself).
``GatherElements`` is ``aten.gather.default``; ``GatherND`` (``batch_dims`` 0) is
``aten.index.Tensor`` with one index tensor per indexed dim. Constant indices may be negative
(they are normalised at import); indices computed at run time must not be, as in ``Gather``.
"""

from __future__ import annotations

import math

import torch

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_int, attr_ints, dtype_name, normalize_axis
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode
from engine.ir import DType

__all__ = ["INDEX_CONVERTERS"]


def _split_sizes(b: GraphBuilder, n: OnnxNode, size: int) -> list[int]:
    """The piece lengths: ``split`` (input from opset 13), else ``num_outputs`` equal pieces.

    Without ``split``, opset 18's ``num_outputs`` pieces are ``ceil(size / num_outputs)`` long
    but the last, which takes what is left; earlier opsets split into ``len(outputs)`` equal
    pieces.
    """
    sizes = b.ints(n, 1, "split") if b.opset >= 13 else attr_ints(n, "split")
    count = len(n.outputs)
    if sizes is None:
        num = attr_int(n, "num_outputs", 0) if b.opset >= 18 else 0
        if num:
            piece = math.ceil(size / num)
            sizes = [min(piece, max(size - piece * i, 0)) for i in range(num)]
        elif size % count == 0:
            sizes = [size // count] * count
        else:
            raise CorruptFileError(f"Split {n.name!r} cannot cut {size} into {count} equal parts")
    if len(sizes) != count or min(sizes, default=0) < 0 or sum(sizes) != size:
        raise CorruptFileError(
            f"Split {n.name!r} splits a dim of {size} into {sizes} for {count} outputs"
        )
    return sizes


def split(b: GraphBuilder, n: OnnxNode) -> Val:
    """``slice(x, axis, start_i, start_i + len_i)`` per output; unread outputs are skipped."""
    x = b.input(n, 0)
    axis = normalize_axis(attr_int(n, "axis", 0), x.dim(), n)
    size = x.shape[axis]
    start, first = 0, None
    for i, (name, length) in enumerate(zip(n.outputs, _split_sizes(b, n, size), strict=True)):
        if i == 0 or (name and b.consumers.get(name)):
            piece = x
            if length != size:
                piece = b.emit("aten.slice.Tensor", x, axis, start, start + length, 1, tag=str(i))
            if i == 0:
                first = piece
            else:
                b.bind(name, piece)
        start += length
    assert first is not None
    return first


def _indices(b: GraphBuilder, n: OnnxNode, idx: Val, sizes: list[int]) -> Val:
    """``idx`` as int64; constant negative entries counted from the end of their dim.

    ``sizes`` broadcasts against ``idx``: the size of the dim each index element indexes (one
    size for ``GatherElements``; for ``GatherND`` one per leading data dim, along the last axis).
    """
    if idx.const is None:
        if idx.dtype == torch.int64:
            return idx
        return b.emit("aten.to.dtype", idx, DType("int64"), tag="index")
    index = idx.const.to(torch.int64)
    bound = torch.tensor(sizes, dtype=torch.int64)
    if index.numel() and not bool(((index >= -bound) & (index < bound)).all()):
        raise CorruptFileError(f"{n.op_type} {n.name!r} has indices out of range")
    return b.constant(torch.where(index < 0, index + bound, index), n.inputs[1])


def gather_elements(b: GraphBuilder, n: OnnxNode) -> Val:
    """``out[i][j][k] = data[index[i][j][k]][j][k]`` (axis 0): ``aten.gather.default``."""
    data, idx = b.input(n, 0), b.input(n, 1)
    axis = normalize_axis(attr_int(n, "axis", 0), data.dim(), n)
    if idx.dim() != data.dim():
        raise CorruptFileError(f"GatherElements {n.name!r}: index rank {idx.dim()} != data's")
    return b.emit("aten.gather.default", data, axis, _indices(b, n, idx, [data.shape[axis]]))


def gather_nd(b: GraphBuilder, n: OnnxNode) -> Val:
    """``out[i...] = data[index[i..., 0], ..., index[i..., k-1]]``; ``batch_dims`` must be 0.

    Output shape: ``index.shape[:-1] + data.shape[k:]``, ``k = index.shape[-1]``.
    """
    data, idx = b.input(n, 0), b.input(n, 1)
    if attr_int(n, "batch_dims", 0) != 0:
        raise UnsupportedOpsError(
            f"GatherND {n.name!r} has batch_dims={attr_int(n, 'batch_dims', 0)}; MPQ supports 0"
        )
    k = idx.shape[-1] if idx.dim() else 0
    if not 1 <= k <= data.dim():
        raise CorruptFileError(f"GatherND {n.name!r} indexes {k} dims of a rank-{data.dim()} input")
    idx = _indices(b, n, idx, data.shape[:k])
    parts = [b.emit("aten.select.int", idx, -1, j, tag=f"index{j}") for j in range(k)]
    return b.emit("aten.index.Tensor", data, parts)


def tile(b: GraphBuilder, n: OnnxNode) -> Val:
    """``repeat(x, repeats)``: dim ``i`` repeated ``repeats[i]`` times."""
    x = b.input(n, 0)
    repeats = b.ints(n, 1, "repeats") or []
    if len(repeats) != x.dim() or min(repeats, default=0) < 0:
        raise CorruptFileError(f"Tile {n.name!r} has repeats {repeats} for rank {x.dim()}")
    if all(r == 1 for r in repeats):
        return x
    return b.emit("aten.repeat.default", x, repeats)


def trilu(b: GraphBuilder, n: OnnxNode) -> Val:
    """``triu(x, k)`` (``upper=1``, the default) or ``tril(x, k)`` over the last two dims."""
    x = b.input(n, 0)
    if x.dim() < 2:
        raise CorruptFileError(f"Trilu {n.name!r} needs a rank >= 2 input, not {x.shape}")
    k = b.ints(n, 1, "k")
    diagonal = k[0] if k else 0
    op = "aten.triu.default" if attr_int(n, "upper", 1) else "aten.tril.default"
    return b.emit(op, x, diagonal)


def cum_sum(b: GraphBuilder, n: OnnxNode) -> Val:
    """Running sum along ``axis``, in ``x``'s dtype.

    ``exclusive`` shifts it by one (the first element is 0); ``reverse`` sums from the end.
    """
    x = b.input(n, 0)
    axis_list = b.ints(n, 1, "axis")
    if axis_list is None or len(axis_list) != 1:
        raise CorruptFileError(f"CumSum {n.name!r} needs one axis, not {axis_list}")
    axis = normalize_axis(axis_list[0], x.dim(), n)
    reverse = bool(attr_int(n, "reverse", 0))
    y = b.emit("aten.flip.default", x, [axis], tag="reverse") if reverse else x
    y = b.emit("aten.cumsum.default", y, axis, dtype=DType(dtype_name(x.dtype)))
    if attr_int(n, "exclusive", 0):
        spec = [0, 0] * (x.dim() - 1 - axis) + [1, 0]  # constant_pad_nd lists the last dim first
        y = b.emit("aten.constant_pad_nd.default", y, spec, 0, tag="exclusive")
        y = b.emit("aten.slice.Tensor", y, axis, 0, x.shape[axis], 1, tag="exclusive")
    if reverse:
        y = b.emit("aten.flip.default", y, [axis], tag="unreverse")
    return y


INDEX_CONVERTERS = {
    "Split": split,
    "GatherElements": gather_elements,
    "GatherND": gather_nd,
    "Tile": tile,
    "Trilu": trilu,
    "CumSum": cum_sum,
}
