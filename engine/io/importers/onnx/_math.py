"""ONNX variadic and special elementwise operators -> ATen.

- ``Max``/``Min``/``Sum``/``Mean`` take any number of inputs, broadcast together: a chain of
  ``maximum``/``minimum``/``add`` (a one-element constant operand as ``clamp_min``/
  ``clamp_max``/``add.Scalar``), ``Mean`` then divided by the count;
- ``Mod``: ``fmod=0`` (integers only) takes the divisor's sign, as ``remainder`` does;
  ``fmod=1`` the dividend's, as ``fmod``;
- ``IsInf``: ``isinf``, or ``x == +inf`` / ``x == -inf`` when only one sign is detected.
"""

from __future__ import annotations

import math

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_int
from engine.io.importers.onnx._elementwise import scalar_operand
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode
from engine.ir import DType

__all__ = ["MATH_CONVERTERS"]

# op_type -> (tensor-tensor op, tensor-scalar op)
_VARIADIC = {
    "Max": ("aten.maximum.default", "aten.clamp_min.default"),
    "Min": ("aten.minimum.default", "aten.clamp_max.default"),
    "Sum": ("aten.add.Tensor", "aten.add.Scalar"),
    "Mean": ("aten.add.Tensor", "aten.add.Scalar"),
}


def variadic(b: GraphBuilder, n: OnnxNode) -> Val:
    """Fold the inputs left to right with the op's binary form (see the module docstring)."""
    xs = [b.input(n, i) for i in range(len(n.inputs))]
    if not xs:
        raise CorruptFileError(f"{n.op_type} {n.name!r} has no inputs")
    tensor_op, scalar_op = _VARIADIC[n.op_type]
    acc = xs[0]
    for i, y in enumerate(xs[1:]):
        if (c := scalar_operand(y, acc)) is not None:
            acc = b.emit(scalar_op, acc, c, tag=str(i))
        elif (c := scalar_operand(acc, y)) is not None:
            acc = b.emit(scalar_op, y, c, tag=str(i))
        else:
            acc = b.emit(tensor_op, acc, y, tag=str(i))
    if n.op_type == "Mean" and len(xs) > 1:
        if not acc.dtype.is_floating_point:
            raise UnsupportedOpsError(f"Mean {n.name!r} of {acc.dtype} values; MPQ needs floats")
        acc = b.emit("aten.div.Scalar", acc, float(len(xs)))
    return acc


def mod(b: GraphBuilder, n: OnnxNode) -> Val:
    """``remainder`` (``fmod=0``) or ``fmod`` (``fmod=1``; required for floats)."""
    x, y = b.input(n, 0), b.input(n, 1)
    use_fmod = bool(attr_int(n, "fmod", 0))
    if not use_fmod and (x.dtype.is_floating_point or y.dtype.is_floating_point):
        raise CorruptFileError(f"Mod {n.name!r} on floats has fmod=0; the spec requires 1")
    name = "fmod" if use_fmod else "remainder"
    if (c := scalar_operand(y, x)) is not None:
        return b.emit(f"aten.{name}.Scalar", x, c)
    return b.emit(f"aten.{name}.Tensor", x, y)


def is_inf(b: GraphBuilder, n: OnnxNode) -> Val:
    """``isinf(x)``, or a comparison with the one infinity detected."""
    x = b.input(n, 0)
    positive, negative = attr_int(n, "detect_positive", 1), attr_int(n, "detect_negative", 1)
    if positive and negative:
        return b.emit("aten.isinf.default", x)
    if positive or negative:
        return b.emit("aten.eq.Scalar", x, math.inf if positive else -math.inf)
    return b.emit("aten.zeros_like.default", x, dtype=DType("bool"))


MATH_CONVERTERS = {
    **dict.fromkeys(_VARIADIC, variadic),
    "Mod": mod,
    "IsInf": is_inf,
}
