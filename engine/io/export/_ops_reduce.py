"""ATen -> ONNX: reductions, arg-reductions, norms and scans.

- ``mean`` / ``sum`` / ``prod`` / ``amax`` / ``amin`` / ``logsumexp(x, dims, keepdim)``
  -> ``ReduceMean`` / ``ReduceSum`` / ``ReduceProd`` / ``ReduceMax`` / ``ReduceMin`` /
  ``ReduceLogSumExp`` with an ``axes`` input, on ``x`` cast to the output dtype (torch
  sums bools and integers as int64); no dims (or ``[]``) reduces everything;
- ``argmax`` / ``argmin(x, dim, keepdim)`` -> ``ArgMax`` / ``ArgMin(axis, keepdims,
  select_last_index=0)`` (the first extreme, as torch); ``dim=None`` takes it over
  ``Reshape(x, [-1])``;
- ``max.dim(x, dim, keepdim)`` -> two outputs, ``ReduceMax`` (values) and ``ArgMax``
  (indices), read by ``getitem``;
- ``linalg_vector_norm(x, ord, dims, keepdim, dtype)``: ``ord`` 2 -> ``ReduceL2``, 1 ->
  ``ReduceL1``, ``inf`` / ``-inf`` -> ``ReduceMax`` / ``ReduceMin`` of ``Abs(x)``, 0 ->
  ``ReduceSum(Cast(x != 0))``, any other p -> ``ReduceSum(|x|^p)^(1/p)``;
- ``cumsum(x, dim, dtype)`` -> ``CumSum(Cast<out dtype>(x), dim)`` (torch sums integers
  as int64).
"""

from __future__ import annotations

import math

import torch

from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, operand, pos
from engine.io.export._tensors import onnx_dtype
from engine.ir import DType, Node

__all__ = ["REDUCE_OPS"]


def _dims(v: object) -> list[int]:
    """A ``dim`` argument (None, an int or a list) as a list; ``[]``: every axis."""
    if v is None:
        return []
    if isinstance(v, int):
        return [v]
    assert isinstance(v, list)
    return [int(d) for d in v]


def _reduce_to(
    b: GraphBuilder, op_type: str, x: str, dims: list[int], keep: bool, *, out: str | None = None
) -> str:
    inputs = [x, b.ints(dims)] if dims else [x]
    return b.add(op_type, inputs, out=out, hint=op_type, keepdims=int(keep))


def _reduce(op_type: str) -> Converter:
    """``op_type(Cast<out dtype>(x), axes, keepdims)`` (torch sums bools and ints as int64)."""

    def convert(b: GraphBuilder, n: Node) -> None:
        x = operand(b, pos(n)[0], b.meta[n.name].dtype)
        dims, keep = _dims(arg(n, 1, "dim")), bool(arg(n, 2, "keepdim", False))
        _reduce_to(b, op_type, x, dims, keep, out=n.name)

    return convert


def _arg_extreme(op_type: str) -> Converter:
    def convert(b: GraphBuilder, n: Node) -> None:
        x, dim = b.value(pos(n)[0]), arg(n, 1, "dim")
        keep = int(bool(arg(n, 2, "keepdim", False)))
        if dim is not None:
            b.add(op_type, [x], out=n.name, axis=int(dim), keepdims=keep)
            return
        flat = b.add("Reshape", [x, b.ints([-1])], hint=n.name)
        index = b.add(op_type, [flat], hint=n.name, axis=0, keepdims=0)
        b.add("Reshape", [index, b.ints(b.meta[n.name].shape)], out=n.name)

    return convert


def _max_dim(b: GraphBuilder, n: Node) -> None:
    x, dim = b.value(pos(n)[0]), int(pos(n)[1])
    keep = int(bool(arg(n, 2, "keepdim", False)))
    values = b.add("ReduceMax", [x, b.ints([dim])], hint=n.name, keepdims=keep)
    indices = b.add("ArgMax", [x], hint=n.name, axis=dim, keepdims=keep)
    b.outputs[n.name] = [values, indices]


def _vector_norm(b: GraphBuilder, n: Node) -> None:
    dtype = arg(n, 4, "dtype")
    dtype = dtype.torch if isinstance(dtype, DType) else b.meta[pos(n)[0].name].dtype
    x = operand(b, pos(n)[0], dtype)
    order = float(arg(n, 1, "ord", 2))
    dims, keep = _dims(arg(n, 2, "dim")), bool(arg(n, 3, "keepdim", False))
    if order == 2:
        _reduce_to(b, "ReduceL2", x, dims, keep, out=n.name)
    elif order == 1:
        _reduce_to(b, "ReduceL1", x, dims, keep, out=n.name)
    elif math.isinf(order):
        op_type = "ReduceMax" if order > 0 else "ReduceMin"
        _reduce_to(b, op_type, b.add("Abs", [x], hint=n.name), dims, keep, out=n.name)
    elif order == 0:
        nonzero = b.add("Not", [b.add("Equal", [x, b.scalar(0, dtype)], hint=n.name)], hint=n.name)
        count = b.add("Cast", [nonzero], hint=n.name, to=onnx_dtype(dtype))
        _reduce_to(b, "ReduceSum", count, dims, keep, out=n.name)
    else:
        powered = b.add(
            "Pow", [b.add("Abs", [x], hint=n.name), b.scalar(order, dtype)], hint=n.name
        )
        total = _reduce_to(b, "ReduceSum", powered, dims, keep)
        b.add("Pow", [total, b.scalar(1 / order, dtype)], out=n.name)


def _cumsum(b: GraphBuilder, n: Node) -> None:
    x = operand(b, pos(n)[0], b.meta[n.name].dtype)
    b.add("CumSum", [x, b.scalar(int(pos(n)[1]), torch.int64)], out=n.name)


_A = "aten."
REDUCE_OPS: dict[str, Converter] = {
    _A + "mean.dim": _reduce("ReduceMean"),
    _A + "mean.default": _reduce("ReduceMean"),
    _A + "sum.dim_IntList": _reduce("ReduceSum"),
    _A + "sum.default": _reduce("ReduceSum"),
    _A + "prod.dim_int": _reduce("ReduceProd"),
    _A + "amax.default": _reduce("ReduceMax"),
    _A + "amin.default": _reduce("ReduceMin"),
    _A + "logsumexp.default": _reduce("ReduceLogSumExp"),
    _A + "argmax.default": _arg_extreme("ArgMax"),
    _A + "argmin.default": _arg_extreme("ArgMin"),
    _A + "max.dim": _max_dim,
    _A + "linalg_vector_norm.default": _vector_norm,
    _A + "cumsum.default": _cumsum,
}
