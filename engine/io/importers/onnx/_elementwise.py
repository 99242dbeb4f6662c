"""ONNX elementwise operators -> ATen: math, comparisons, logic, casts.

ONNX broadcasting is numpy's, which is torch's, so binary operators map one to one. A
one-element constant operand is passed as a Python number (``aten.mul.Scalar(x, 0.5)``)
instead of being stored as a tensor; on the left of a comparison or of ``Sub`` the op is
mirrored (``c < x`` is ``gt.Scalar(x, c)``). An ``Add`` of a 1-D constant to the output of a
bias-less ``aten.linear.default`` that nothing else reads becomes that linear's bias, so
``MatMul + Add`` pairs (how torch.onnx writes ``nn.Linear`` on 3-D inputs) import as one
linear layer.
"""

from __future__ import annotations

import math

import torch

from engine.errors import TrainingModeError
from engine.io.importers.onnx._attrs import attr_float, attr_int, dtype_name, torch_dtype
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode
from engine.ir import DType, Node, Ref

__all__ = ["ELEMENTWISE_CONVERTERS", "scalar_operand"]

_UNARY = {
    "Relu": "aten.relu.default",
    "Sigmoid": "aten.sigmoid.default",
    "Tanh": "aten.tanh.default",
    "Erf": "aten.erf.default",
    "Sqrt": "aten.sqrt.default",
    "Neg": "aten.neg.default",
    "HardSwish": "aten.hardswish.default",
    "Exp": "aten.exp.default",
    "Log": "aten.log.default",
    "Abs": "aten.abs.default",
    "Reciprocal": "aten.reciprocal.default",
    "Sin": "aten.sin.default",
    "Cos": "aten.cos.default",
    "Floor": "aten.floor.default",
    "Ceil": "aten.ceil.default",
    "Round": "aten.round.default",  # both round half to even
    "Sign": "aten.sign.default",
    "IsNaN": "aten.isnan.default",
    "Not": "aten.logical_not.default",
    "Softplus": "aten.softplus.default",  # log(1 + exp(x)); ATen's is x above 20 (rel. 1e-9)
    "Mish": "aten.mish.default",
}
# op_type -> (tensor-tensor op, tensor-scalar op or None)
_BINARY = {
    "Add": ("aten.add.Tensor", "aten.add.Scalar"),
    "Sub": ("aten.sub.Tensor", "aten.sub.Scalar"),
    "Mul": ("aten.mul.Tensor", "aten.mul.Scalar"),
    "Div": ("aten.div.Tensor", "aten.div.Scalar"),
    "Pow": ("aten.pow.Tensor_Tensor", "aten.pow.Tensor_Scalar"),
    "Equal": ("aten.eq.Tensor", "aten.eq.Scalar"),
    "Less": ("aten.lt.Tensor", "aten.lt.Scalar"),
    "LessOrEqual": ("aten.le.Tensor", "aten.le.Scalar"),
    "Greater": ("aten.gt.Tensor", "aten.gt.Scalar"),
    "GreaterOrEqual": ("aten.ge.Tensor", "aten.ge.Scalar"),
    "And": ("aten.__and__.Tensor", None),  # on bool tensors, as ONNX requires
    "Or": ("aten.__or__.Tensor", None),
    "Xor": ("aten.__xor__.Tensor", None),
}
# op_type -> the scalar op computing ``c op x`` as ``x op' c``
_SWAPPED = {
    "Add": "aten.add.Scalar",
    "Mul": "aten.mul.Scalar",
    "Equal": "aten.eq.Scalar",
    "Sub": "aten.rsub.Scalar",
    "Less": "aten.gt.Scalar",
    "LessOrEqual": "aten.ge.Scalar",
    "Greater": "aten.lt.Scalar",
    "GreaterOrEqual": "aten.le.Scalar",
}


def _item(t: torch.Tensor) -> bool | int | float:
    """The one element of ``t`` as a Python number."""
    value = t.item()
    assert isinstance(value, bool | int | float)
    return value


def scalar_operand(v: Val, other: Val) -> bool | int | float | None:
    """``v`` as a Python number if it is a one-element constant that broadcasts away."""
    if v.const is None or other.const is not None or v.const.numel() != 1:
        return None
    return _item(v.const) if v.dim() <= other.dim() else None


def unary(b: GraphBuilder, n: OnnxNode) -> Val:
    """The ATen twin of a one-input elementwise op."""
    return b.emit(_UNARY[n.op_type], b.input(n, 0))


def hard_sigmoid(b: GraphBuilder, n: OnnxNode) -> Val:
    """``max(0, min(1, alpha * x + beta))``; torch's hardsigmoid when alpha=1/6, beta=1/2."""
    x = b.input(n, 0)
    alpha, beta = attr_float(n, "alpha", 0.2), attr_float(n, "beta", 0.5)
    if math.isclose(alpha, 1 / 6, abs_tol=1e-7) and beta == 0.5:
        return b.emit("aten.hardsigmoid.default", x)
    y = b.emit("aten.add.Scalar", b.emit("aten.mul.Scalar", x, alpha), beta)
    return b.emit("aten.clamp.default", y, 0.0, 1.0)


def clip(b: GraphBuilder, n: OnnxNode) -> Val:
    """Opset < 11: ``min``/``max`` attributes; from 11: optional inputs 1 and 2."""
    x = b.input(n, 0)
    if b.opset < 11:
        lo = attr_float(n, "min", -math.inf)
        hi = attr_float(n, "max", math.inf)
        bounds: list[bool | float | int | None] = [None if math.isinf(v) else v for v in (lo, hi)]
    else:
        consts = (b.const(n, 1, "min"), b.const(n, 2, "max"))
        bounds = [None if t is None else _item(t) for t in consts]
    if bounds == [None, None]:
        return x
    return b.emit("aten.clamp.default", x, *bounds)


def _fuse_bias(b: GraphBuilder, n: OnnxNode, x: Val, y: Val) -> Val | None:
    """``linear(x, W, None) + c`` -> ``linear(x, W, c)`` when nothing else reads the linear."""
    for act, bias in ((x, y), (y, x)):
        layer = b.producer(act)
        if layer is None or layer.op != "aten.linear.default" or layer.args[2] is not None:
            continue
        weight = layer.args[1]
        assert isinstance(weight, Ref)
        out_features = b.tensors[weight.name].shape[0]
        if (
            b.reads(act) == 1
            and bias.const is not None
            and bias.shape == [out_features]
            and bias.dtype == act.dtype
        ):
            b.replace_node(Node(layer.name, layer.op, (*layer.args[:2], b.ref(bias))))
            return act
    return None


def binary(b: GraphBuilder, n: OnnxNode) -> Val:
    """Arithmetic, comparisons and logic; integer Div truncates toward zero, as ONNX does."""
    x, y = b.input(n, 0), b.input(n, 1)
    tensor_op, scalar_op = _BINARY[n.op_type]
    if n.op_type == "Add" and (fused := _fuse_bias(b, n, x, y)) is not None:
        return fused
    if n.op_type == "Div" and not (x.dtype.is_floating_point or y.dtype.is_floating_point):
        return b.emit("aten.div.Tensor_mode", x, y, rounding_mode="trunc")  # ONNX int Div
    c = scalar_operand(y, x)
    if scalar_op is not None and c is not None and not (n.op_type == "Div" and isinstance(c, int)):
        out = b.emit(scalar_op, x, c)
    elif (c := scalar_operand(x, y)) is not None and n.op_type in _SWAPPED:
        out = b.emit(_SWAPPED[n.op_type], y, c)
    else:
        out = b.emit(tensor_op, x, y)
    if n.op_type == "Pow" and out.dtype != x.dtype:  # ONNX Pow keeps the base's type
        out = b.emit("aten.to.dtype", out, DType(dtype_name(x.dtype)), tag="cast")
    return out


def where(b: GraphBuilder, n: OnnxNode) -> Val:
    """``where(condition, x, y)``, broadcasting all three."""
    return b.emit("aten.where.self", b.input(n, 0), b.input(n, 1), b.input(n, 2))


def cast(b: GraphBuilder, n: OnnxNode) -> Val:
    """``to.dtype``; a cast to the type the value already has is dropped.

    ``CastLike`` casts to the type of its second input.
    """
    x = b.input(n, 0)
    if n.op_type == "CastLike":
        target = b.input(n, 1).dtype
    else:
        target = torch_dtype(attr_int(n, "to", 0), f"Cast {n.name!r} target")
    if x.dtype == target:
        return x
    return b.emit("aten.to.dtype", x, DType(dtype_name(target)))


def identity(b: GraphBuilder, n: OnnxNode) -> Val:
    """Identity, and Dropout in inference (its ``training_mode`` input must be false)."""
    if n.op_type == "Dropout":
        training = b.const(n, 2, "training_mode") if b.opset >= 12 else None
        if (training is not None and bool(training.item())) or attr_int(n, "is_test", 1) == 0:
            raise TrainingModeError(
                f"Dropout {n.name!r} runs in training mode; call model.eval() before exporting"
            )
    return b.input(n, 0)


ELEMENTWISE_CONVERTERS = {
    **dict.fromkeys(_UNARY, unary),
    **dict.fromkeys(_BINARY, binary),
    "HardSigmoid": hard_sigmoid,
    "Clip": clip,
    "Where": where,
    "Cast": cast,
    "CastLike": cast,
    "Identity": identity,
    "Dropout": identity,
}
