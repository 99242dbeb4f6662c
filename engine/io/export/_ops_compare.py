"""ATen -> ONNX: comparisons, logic, selection and tensor bounds.

- ``eq/ne/lt/gt/le/ge(x, y)`` -> ``Equal`` / ``Not(Equal)`` / ``Less`` / ``Greater`` /
  ``LessOrEqual`` / ``GreaterOrEqual`` on both operands cast to their promoted type
  (``torch.result_type``: ``int_tensor < 0.5`` compares in float32; bools are ordered
  as int32); a bool result;
- ``__and__`` / ``__or__`` / ``__xor__`` -> ``And`` / ``Or`` / ``Xor`` on bools,
  ``BitwiseAnd`` / ``BitwiseOr`` / ``BitwiseXor`` on integers; ``bitwise_not`` ->
  ``Not`` / ``BitwiseNot``;
- ``isnan`` / ``isinf`` -> ``IsNaN`` / ``IsInf`` (integers cast to float first: never true);
  ``logical_not(x) = Not(Cast<bool>(x))`` (non-zero is true);
- ``where(c, x, y)`` (tensors or scalars) -> ``Where(c, x, y)`` in the output dtype;
  ``masked_fill(x, m, v) = Where(m, v, x)``;
- ``clamp.Tensor(x, lo, hi) = Min(Max(x, lo), hi)`` (``Clip`` takes scalar bounds only);
  ``maximum`` / ``minimum`` / ``max.other`` / ``min.other`` -> ``Max`` / ``Min`` (on
  bools ``Or`` / ``And``).
"""

from __future__ import annotations

from typing import Any

import torch

from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, operand, pos
from engine.ir import Node, Ref

__all__ = ["COMPARE_OPS"]


def _result_dtype(b: GraphBuilder, x: Any, y: Any) -> torch.dtype:
    """The dtype torch computes ``x op y`` in (tensor refs or Python scalars)."""

    def probe(v: Any) -> Any:
        if isinstance(v, Ref):
            m = b.meta[v.name]
            return torch.empty(m.shape, dtype=m.dtype, device="meta")
        return v

    return torch.result_type(probe(x), probe(y))


def _compare(op_type: str, *, negate: bool = False) -> Converter:
    def convert(b: GraphBuilder, n: Node) -> None:
        x, y = pos(n)[0], pos(n)[1]
        dtype = _result_dtype(b, x, y)
        if dtype == torch.bool and op_type != "Equal":  # ONNX orders numbers only
            dtype = torch.int32
        inputs = [operand(b, x, dtype), operand(b, y, dtype)]
        if negate:
            b.add("Not", [b.add(op_type, inputs, hint=n.name)], out=n.name)
        else:
            b.add(op_type, inputs, out=n.name)

    return convert


def _logical(bool_op: str, int_op: str, arity: int) -> Converter:
    """``bool_op`` on bool outputs, ``int_op`` (bitwise) on integer ones."""

    def convert(b: GraphBuilder, n: Node) -> None:
        dtype = b.meta[n.name].dtype
        inputs = [operand(b, v, dtype) for v in pos(n)[:arity]]
        b.add(bool_op if dtype == torch.bool else int_op, inputs, out=n.name)

    return convert


def _logical_not(b: GraphBuilder, n: Node) -> None:
    b.add("Not", [operand(b, pos(n)[0], torch.bool)], out=n.name)


def _float_test(op_type: str) -> Converter:
    """``IsNaN`` / ``IsInf`` (float inputs only in ONNX; an integer is never either)."""

    def convert(b: GraphBuilder, n: Node) -> None:
        x = pos(n)[0]
        dtype = b.meta[x.name].dtype
        as_float = operand(b, x, dtype if dtype.is_floating_point else torch.float32)
        b.add(op_type, [as_float], out=n.name)

    return convert


def _where(b: GraphBuilder, n: Node) -> None:
    dtype = b.meta[n.name].dtype
    x, y = operand(b, pos(n)[1], dtype), operand(b, pos(n)[2], dtype)
    b.add("Where", [operand(b, pos(n)[0], torch.bool), x, y], out=n.name)


def _masked_fill(b: GraphBuilder, n: Node) -> None:
    dtype = b.meta[n.name].dtype
    x, value = b.value(pos(n)[0]), operand(b, pos(n)[2], dtype)
    b.add("Where", [operand(b, pos(n)[1], torch.bool), value, x], out=n.name)


def _clamp_tensor(b: GraphBuilder, n: Node) -> None:
    dtype = b.meta[n.name].dtype
    out = operand(b, pos(n)[0], dtype)
    lo, hi = arg(n, 1, "min"), arg(n, 2, "max")
    if lo is not None:
        out = b.add("Max", [out, operand(b, lo, dtype)], hint=n.name)
    if hi is not None:
        out = b.add("Min", [out, operand(b, hi, dtype)], hint=n.name)
    b.add("Identity", [out], out=n.name)


def _extreme(numeric: str, boolean: str) -> Converter:
    """``Max`` / ``Min``; on bools (which ONNX does not order) ``Or`` / ``And``."""

    def convert(b: GraphBuilder, n: Node) -> None:
        dtype = b.meta[n.name].dtype
        inputs = [operand(b, pos(n)[0], dtype), operand(b, pos(n)[1], dtype)]
        b.add(boolean if dtype == torch.bool else numeric, inputs, out=n.name)

    return convert


_A = "aten."
_COMPARISONS = {
    "eq": ("Equal", False),
    "ne": ("Equal", True),
    "lt": ("Less", False),
    "gt": ("Greater", False),
    "le": ("LessOrEqual", False),
    "ge": ("GreaterOrEqual", False),
}
COMPARE_OPS: dict[str, Converter] = {
    **{_A + f"{op}.Scalar": _compare(t, negate=neg) for op, (t, neg) in _COMPARISONS.items()},
    **{_A + f"{op}.Tensor": _compare(t, negate=neg) for op, (t, neg) in _COMPARISONS.items()},
    _A + "__and__.Tensor": _logical("And", "BitwiseAnd", 2),
    _A + "__or__.Tensor": _logical("Or", "BitwiseOr", 2),
    _A + "__xor__.Tensor": _logical("Xor", "BitwiseXor", 2),
    _A + "isnan.default": _float_test("IsNaN"),
    _A + "isinf.default": _float_test("IsInf"),
    _A + "bitwise_not.default": _logical("Not", "BitwiseNot", 1),
    _A + "logical_not.default": _logical_not,
    _A + "where.self": _where,
    _A + "where.ScalarOther": _where,
    _A + "where.ScalarSelf": _where,
    _A + "masked_fill.Scalar": _masked_fill,
    _A + "masked_fill.Tensor": _masked_fill,
    _A + "clamp.Tensor": _clamp_tensor,
    _A + "maximum.default": _extreme("Max", "Or"),
    _A + "minimum.default": _extreme("Min", "And"),
    _A + "max.other": _extreme("Max", "Or"),
    _A + "min.other": _extreme("Min", "And"),
}
