"""ONNX shape and data-movement operators -> ATen, with static shapes made concrete.

Every shape-like operand (``Reshape`` shape, ``Slice`` starts/ends/axes/steps, ``Squeeze`` and
``Unsqueeze`` axes, ``Expand`` shape, constant ``Gather`` indices) must be known at import time
and becomes plain ints in the node's arguments. ``Shape`` of any value is a constant (all
shapes are static), so shape arithmetic folds away. ``Gather`` from a 2-D float initializer on
axis 0 is an embedding lookup, ``aten.embedding.default(weight, indices)``.
"""

from __future__ import annotations

import math

import torch

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_int, attr_ints, attr_tensor, normalize_axis
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import AttributeType, OnnxNode

__all__ = ["SHAPE_CONVERTERS"]


def constant(b: GraphBuilder, n: OnnxNode) -> Val:
    """A ``Constant`` node: ``value`` (a tensor) or one of the ``value_*`` number forms."""
    hint = n.outputs[0] if n.outputs else n.name
    tensor = attr_tensor(n, "value")
    if tensor is not None:
        return b.constant(b.load(tensor), hint)
    forms = {
        "value_float": (AttributeType.FLOAT, torch.float32),
        "value_floats": (AttributeType.FLOATS, torch.float32),
        "value_int": (AttributeType.INT, torch.int64),
        "value_ints": (AttributeType.INTS, torch.int64),
    }
    for name, (kind, dtype) in forms.items():
        attr = n.attributes.get(name)
        if attr is not None and attr.type == kind:
            return b.constant(torch.tensor(attr.value, dtype=dtype), hint)
    raise UnsupportedOpsError(
        f"Constant {n.name!r} has attributes {sorted(n.attributes)}; MPQ reads value, "
        "value_float(s) and value_int(s) (no strings or sparse tensors)"
    )


def shape(b: GraphBuilder, n: OnnxNode) -> Val:
    """The static shape as an int64 constant; ``start``/``end`` (opset 15) slice it."""
    dims = b.input(n, 0).shape
    start, end = attr_int(n, "start", 0), attr_int(n, "end", len(dims))
    return b.constant(torch.tensor(dims[start:end], dtype=torch.int64), n.outputs[0])


def flatten(b: GraphBuilder, n: OnnxNode) -> Val:
    """``[d_0 ... d_(axis-1)] x [d_axis ...]`` -> 2-D."""
    x = b.input(n, 0)
    axis = attr_int(n, "axis", 1)
    axis = axis + x.dim() if axis < 0 else axis
    if not 0 <= axis <= x.dim():
        raise CorruptFileError(f"Flatten {n.name!r} has axis {axis} for rank {x.dim()}")
    shape = [math.prod(x.shape[:axis]), math.prod(x.shape[axis:])]
    return b.emit("aten.reshape.default", x, shape)


def reshape(b: GraphBuilder, n: OnnxNode) -> Val:
    """A 0 in the target copies the input's dim unless ``allowzero`` (opset 14) is set."""
    x = b.input(n, 0)
    target = b.ints(n, 1, "target shape") or []
    if not attr_int(n, "allowzero", 0):
        if any(d == 0 and i >= x.dim() for i, d in enumerate(target)):
            raise CorruptFileError(f"Reshape {n.name!r} copies dim beyond rank {x.dim()}")
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return b.emit("aten.reshape.default", x, target)


def transpose(b: GraphBuilder, n: OnnxNode) -> Val:
    """``permute(x, perm)``; no ``perm`` reverses the dims."""
    x = b.input(n, 0)
    perm = attr_ints(n, "perm")
    return b.emit("aten.permute.default", x, perm or list(reversed(range(x.dim()))))


def concat(b: GraphBuilder, n: OnnxNode) -> Val:
    """``cat([inputs], axis)``."""
    xs = [b.input(n, i) for i in range(len(n.inputs))]
    if not xs:
        raise CorruptFileError(f"Concat {n.name!r} has no inputs")
    return b.emit("aten.cat.default", xs, normalize_axis(attr_int(n, "axis", 0), xs[0].dim(), n))


def _slice_range(start: int, end: int, step: int, size: int) -> tuple[int, int]:
    """ONNX's clamping of ``start``/``end`` for a dim of ``size``."""
    start, end = (v + size if v < 0 else v for v in (start, end))
    if step > 0:
        return min(max(start, 0), size), min(max(end, 0), size)
    return min(max(start, 0), size - 1), min(max(end, -1), size - 1)


def slice_(b: GraphBuilder, n: OnnxNode) -> Val:
    """Positive steps -> ``aten.slice.Tensor`` per axis; negative -> ``index_select``."""
    x = b.input(n, 0)
    if b.opset < 10:
        starts, ends, axes = (attr_ints(n, k) for k in ("starts", "ends", "axes"))
        steps = None
    else:
        starts, ends = b.ints(n, 1, "starts"), b.ints(n, 2, "ends")
        axes, steps = b.ints(n, 3, "axes"), b.ints(n, 4, "steps")
    if starts is None or ends is None or len(starts) != len(ends):
        raise CorruptFileError(f"Slice {n.name!r} has starts {starts} and ends {ends}")
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
        dim = normalize_axis(axis, x.dim(), n)
        size = x.shape[dim]
        if step == 0:
            raise CorruptFileError(f"Slice {n.name!r} has step 0")
        lo, hi = _slice_range(start, end, step, size)
        if step > 0 and (lo, hi, step) != (0, size, 1):
            x = b.emit("aten.slice.Tensor", x, dim, lo, max(lo, hi), step)
        elif step < 0:
            b.charge(8 * len(range(lo, hi, step)))
            index = torch.arange(lo, hi, step, dtype=torch.int64)
            x = b.emit("aten.index_select.default", x, dim, b.constant(index, n.name + ".index"))
    return x


def squeeze(b: GraphBuilder, n: OnnxNode) -> Val:
    """Axes an attribute before opset 13, an input from 13; none given: every size-1 dim."""
    x = b.input(n, 0)
    axes = b.ints(n, 1, "axes") if b.opset >= 13 else attr_ints(n, "axes")
    if axes is None:
        dims = [i for i, d in enumerate(x.shape) if d == 1]
    else:
        dims = sorted({normalize_axis(a, x.dim(), n) for a in axes})
        if any(x.shape[d] != 1 for d in dims):
            raise CorruptFileError(f"Squeeze {n.name!r} axes {axes} of a {x.shape} tensor")
    return b.emit("aten.squeeze.dims", x, dims) if dims else x


def unsqueeze(b: GraphBuilder, n: OnnxNode) -> Val:
    """Axes (of the output) an attribute before opset 13, an input from 13."""
    x = b.input(n, 0)
    axes = b.ints(n, 1, "axes") if b.opset >= 13 else attr_ints(n, "axes")
    rank = x.dim() + len(axes or [])
    dims = sorted({normalize_axis(a, rank, n) for a in axes or []})
    if not dims or len(dims) != len(axes or []):
        raise CorruptFileError(f"Unsqueeze {n.name!r} has axes {axes}")
    for d in dims:  # ascending, so each insert leaves the earlier ones in place
        x = b.emit("aten.unsqueeze.default", x, d)
    return x


def gather(b: GraphBuilder, n: OnnxNode) -> Val:
    """Embedding lookup, ``select`` (scalar index) or ``index_select`` (+ reshape).

    Output shape: ``data.shape[:axis] + indices.shape + data.shape[axis + 1:]``. Constant
    indices may be negative (counted from the end); indices computed at run time may not.
    """
    data, idx = b.input(n, 0), b.input(n, 1)
    axis = normalize_axis(attr_int(n, "axis", 0), data.dim(), n)
    out_shape = data.shape[:axis] + idx.shape + data.shape[axis + 1 :]
    index = None
    if idx.const is not None:
        size = data.shape[axis]
        index = idx.const.to(torch.int64)
        if index.numel() and not (-size <= int(index.min()) and int(index.max()) < size):
            raise CorruptFileError(f"Gather {n.name!r} indexes past dim {axis} of size {size}")
        if bool((index < 0).any()):
            index = torch.where(index < 0, index + size, index)
            idx = b.constant(index, n.inputs[1])
    if data.const is not None and axis == 0 and data.dim() == 2 and data.dtype.is_floating_point:
        return b.emit("aten.embedding.default", data, idx)
    if index is not None:
        if index.dim() == 0:
            return b.emit("aten.select.int", data, axis, int(index))
        idx = b.constant(index.reshape(-1), n.inputs[1])
    elif idx.dim() != 1:
        idx = b.emit("aten.reshape.default", idx, [-1], tag="index")
    out = b.emit("aten.index_select.default", data, axis, idx)
    return out if out.shape == out_shape else b.emit("aten.reshape.default", out, out_shape)


def expand(b: GraphBuilder, n: OnnxNode) -> Val:
    """ONNX Expand broadcasts both ways: the result has ``broadcast(x.shape, shape)``."""
    x = b.input(n, 0)
    target = b.ints(n, 1, "shape") or []
    rank = max(x.dim(), len(target))
    out = []
    for d, t in zip(
        [1] * (rank - x.dim()) + x.shape, [1] * (rank - len(target)) + target, strict=True
    ):
        if d != t and 1 not in (d, t):
            raise CorruptFileError(f"Expand {n.name!r}: {x.shape} does not broadcast to {target}")
        out.append(d if t == 1 else t)
    return x if out == x.shape else b.emit("aten.expand.default", x, out)


SHAPE_CONVERTERS = {
    "Constant": constant,
    "Shape": shape,
    "Flatten": flatten,
    "Reshape": reshape,
    "Transpose": transpose,
    "Concat": concat,
    "Slice": slice_,
    "Squeeze": squeeze,
    "Unsqueeze": unsqueeze,
    "Gather": gather,
    "Expand": expand,
}
