"""ONNX reductions -> ATen: ``Reduce*``, ``ArgMax``/``ArgMin`` and ``GlobalMaxPool``.

A ``Reduce*`` node reduces ``axes`` (an attribute before opset 18 -- 13 for ``ReduceSum`` --
an input from then on; none given: every axis, unless ``noop_with_empty_axes``), keeping them
as size 1 when ``keepdims`` (default 1). The ATen twins:

- ``ReduceMean`` -> ``mean.dim``, ``ReduceSum`` -> ``sum.dim_IntList``;
- ``ReduceMax`` / ``ReduceMin`` -> ``amax`` / ``amin``; ``ReduceProd`` -> ``prod.dim_int``
  per axis;
- ``ReduceL1`` / ``ReduceL2`` -> ``linalg_vector_norm`` with ord 1 / 2 (floats);
  ``ReduceSumSquare`` -> ``sum(x * x)``; ``ReduceLogSum`` -> ``log(sum)``;
  ``ReduceLogSumExp`` -> ``logsumexp``.
"""

from __future__ import annotations

from engine.errors import UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_int, attr_ints, normalize_axis
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode

__all__ = ["REDUCE_CONVERTERS"]

_FLOAT_ONLY = {"ReduceMean", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"}


def _dims(b: GraphBuilder, n: OnnxNode, x: Val) -> list[int] | None:
    """The sorted axes to reduce; None when the node is a no-op (empty axes, noop flag)."""
    axes_from_input = b.opset >= (13 if n.op_type == "ReduceSum" else 18)
    axes = b.ints(n, 1, "axes") if axes_from_input else attr_ints(n, "axes")
    if not axes:
        if axes_from_input and attr_int(n, "noop_with_empty_axes", 0):
            return None
        axes = list(range(x.dim()))
    return sorted({normalize_axis(a, x.dim(), n) for a in axes})


def reduce(b: GraphBuilder, n: OnnxNode) -> Val:
    """One ``Reduce*`` node (see the module docstring for each op's ATen form)."""
    x = b.input(n, 0)
    dims = _dims(b, n, x)
    if dims is None:
        return x
    keep = bool(attr_int(n, "keepdims", 1))
    op = n.op_type
    if op in _FLOAT_ONLY and not x.dtype.is_floating_point:
        raise UnsupportedOpsError(f"{op} {n.name!r} on {x.dtype}; MPQ needs floats")
    if op == "ReduceMean":
        return b.emit("aten.mean.dim", x, dims, keep)
    if op in ("ReduceSum", "ReduceSumSquare", "ReduceLogSum"):
        if op == "ReduceSumSquare":
            x = b.emit("aten.mul.Tensor", x, x, tag="square")
        y = b.emit("aten.sum.dim_IntList", x, dims, keep)
        return b.emit("aten.log.default", y, tag="log") if op == "ReduceLogSum" else y
    if op in ("ReduceMax", "ReduceMin"):
        if 0 in [x.shape[d] for d in dims]:
            raise UnsupportedOpsError(f"{op} {n.name!r} reduces an empty axis of {x.shape}")
        aten = "aten.amax.default" if op == "ReduceMax" else "aten.amin.default"
        return b.emit(aten, x, dims, keep)
    if op in ("ReduceL1", "ReduceL2"):
        order = 1 if op == "ReduceL1" else 2
        return b.emit("aten.linalg_vector_norm.default", x, order, dims, keep)
    if op == "ReduceLogSumExp":
        return b.emit("aten.logsumexp.default", x, dims, keep)
    assert op == "ReduceProd"
    for d in sorted(dims, reverse=True):  # from the last, so earlier axes keep their index
        x = b.emit("aten.prod.dim_int", x, d, keep)
    return x


def arg_reduce(b: GraphBuilder, n: OnnxNode) -> Val:
    """``argmax``/``argmin`` over ``axis`` (int64); ``select_last_index`` picks the last tie."""
    x = b.input(n, 0)
    axis = normalize_axis(attr_int(n, "axis", 0), x.dim(), n)
    keep = bool(attr_int(n, "keepdims", 1))
    op = "aten.argmax.default" if n.op_type == "ArgMax" else "aten.argmin.default"
    if not attr_int(n, "select_last_index", 0):
        return b.emit(op, x, axis, keep)
    # the last tie of x is the first tie of x reversed, at index size - 1 - i
    i = b.emit(op, b.emit("aten.flip.default", x, [axis], tag="reverse"), axis, keep)
    return b.emit("aten.rsub.Scalar", i, x.shape[axis] - 1, tag="last")


def global_max_pool(b: GraphBuilder, n: OnnxNode) -> Val:
    """Max over every spatial dim, kept: ``amax(x, [2, ...], True)``."""
    x = b.input(n, 0)
    return b.emit("aten.amax.default", x, list(range(2, x.dim())), True)


REDUCE_CONVERTERS = {
    **dict.fromkeys(
        (
            "ReduceMean",
            "ReduceSum",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceSumSquare",
            "ReduceLogSum",
            "ReduceLogSumExp",
        ),
        reduce,
    ),
    "ArgMax": arg_reduce,
    "ArgMin": arg_reduce,
    "GlobalMaxPool": global_max_pool,
}
