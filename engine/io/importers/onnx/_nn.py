"""ONNX layer operators -> ATen: convolution, dense layers, normalisation, pooling, softmax.

The mappings follow the conventions the later passes match on: ``Conv`` is
``aten.conv{1,2}d.default(x, W, b|None, stride, padding, dilation, groups)`` with asymmetric
padding as a separate ``aten.constant_pad_nd.default``; ``Gemm`` and ``MatMul`` with a constant
right operand are ``aten.linear.default(x, W[out, in], b|None)`` with ``W`` stored transposed
where ONNX keeps it ``[in, out]``; ``BatchNormalization`` is eval-mode
``aten.batch_norm.default``.
"""

from __future__ import annotations

import math

from engine.errors import TrainingModeError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import (
    attr_float,
    attr_int,
    attr_ints,
    attr_str,
    normalize_axis,
)
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode

__all__ = ["NN_CONVERTERS"]


def _spatial(n: OnnxNode, x: Val, what: str) -> int:
    k = x.dim() - 2
    if k not in (1, 2):
        raise UnsupportedOpsError(
            f"ONNX node {n.name!r} is a {n.op_type} over {k} spatial dims (input shape "
            f"{x.shape}); MPQ supports 1-D and 2-D {what} only"
        )
    return k


def _pads(n: OnnxNode, x: Val, kernel: list[int], strides: list[int], dil: list[int]) -> list[int]:
    """ONNX ``pads`` ``[b_1, ..., b_k, e_1, ..., e_k]``, computing ``auto_pad`` ones.

    SAME_UPPER/SAME_LOWER pad so that ``out = ceil(in / stride)``, the odd pixel going at the
    end (UPPER) or the beginning (LOWER); VALID pads nothing.
    """
    k, auto = len(kernel), attr_str(n, "auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = attr_ints(n, "pads") or [0] * (2 * k)
        if len(pads) != 2 * k or min(pads) < 0:
            raise UnsupportedOpsError(f"ONNX node {n.name!r} has invalid pads {pads}")
        return pads
    if auto == "VALID":
        return [0] * (2 * k)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise UnsupportedOpsError(f"ONNX node {n.name!r} has unknown auto_pad {auto!r}")
    begins, ends = [], []
    for size, kern, s, d in zip(x.shape[2:], kernel, strides, dil, strict=True):
        total = max(0, (math.ceil(size / s) - 1) * s + (kern - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begins.append(small if auto == "SAME_UPPER" else big)
        ends.append(big if auto == "SAME_UPPER" else small)
    return begins + ends


def _pad_input(
    b: GraphBuilder, x: Val, pads: list[int], value: float, limit: list[int] | None
) -> tuple[Val, list[int]]:
    """Symmetric pads within ``limit`` -> ``(x, padding)``; others -> a pad node, zero padding."""
    k = len(pads) // 2
    begins, ends = pads[:k], pads[k:]
    if begins == ends and all(p <= m for p, m in zip(begins, limit or begins, strict=True)):
        return x, begins
    spec: list[int] = []
    for i in reversed(range(k)):  # constant_pad_nd pads the last dim first
        spec += [begins[i], ends[i]]
    return b.emit("aten.constant_pad_nd.default", x, spec, value, tag="pad"), [0] * k


def conv(b: GraphBuilder, n: OnnxNode) -> Val:
    """``conv{1,2}d(x, W, B|None, strides, pads, dilations, group)``; ``auto_pad`` resolved."""
    x, w, bias = b.input(n, 0), b.input(n, 1), b.optional(n, 2)
    k = _spatial(n, x, "convolutions")
    kernel = w.shape[2:]
    strides = attr_ints(n, "strides") or [1] * k
    dil = attr_ints(n, "dilations") or [1] * k
    x, padding = _pad_input(b, x, _pads(n, x, kernel, strides, dil), 0.0, None)
    group = attr_int(n, "group", 1)
    return b.emit(f"aten.conv{k}d.default", x, w, bias, strides, padding, dil, group)


def gemm(b: GraphBuilder, n: OnnxNode) -> Val:
    """``Y = alpha * A' @ B' + beta * C`` (``A'`` = ``A.T`` if transA, same for B)."""
    a, w, c = b.input(n, 0), b.input(n, 1), b.optional(n, 2)
    alpha, beta = attr_float(n, "alpha", 1.0), attr_float(n, "beta", 1.0)
    if attr_int(n, "transA", 0):
        a = b.emit("aten.t.default", a, tag="transA")
    trans_b = attr_int(n, "transB", 0)
    bias = None
    if w.const is not None and a.const is None:
        out_features = w.shape[0] if trans_b else w.shape[1]
        if (
            c is not None
            and c.const is not None
            and alpha == beta == 1.0
            and c.shape in ([out_features], [1, out_features])
        ):
            bias = b.derived(c, "" if c.dim() == 1 else "flat", lambda t: t.reshape(-1))
            c = None
        weight = b.derived(w, "" if trans_b else "T", lambda t: t.T)
        y = b.emit("aten.linear.default", a, weight, bias)
    else:
        y = b.emit("aten.matmul.default", a, b.emit("aten.t.default", w) if trans_b else w)
    if alpha != 1.0:
        y = b.emit("aten.mul.Scalar", y, alpha, tag="alpha")
    if c is not None:
        if beta != 1.0:
            c = b.emit("aten.mul.Scalar", c, beta, tag="beta")
        y = b.emit("aten.add.Tensor", y, c, tag="C")
    return y


def matmul(b: GraphBuilder, n: OnnxNode) -> Val:
    """``x @ W`` with a constant 2-D ``W`` is ``linear(x, W.T)``; anything else stays matmul."""
    x, w = b.input(n, 0), b.input(n, 1)
    if w.const is not None and x.const is None and w.dim() == 2 and x.dim() >= 1:
        return b.emit("aten.linear.default", x, b.derived(w, "T", lambda t: t.T), None)
    return b.emit("aten.matmul.default", x, w)


def batch_norm(b: GraphBuilder, n: OnnxNode) -> Val:
    """Eval-mode ``batch_norm(x, scale, B, mean, var, False, 0.1, epsilon, False)``."""
    if attr_int(n, "training_mode", 0):
        raise TrainingModeError(
            f"BatchNormalization {n.name!r} runs in training mode; call model.eval() before "
            "torch.onnx.export (or export with training=TrainingMode.EVAL) and export again"
        )
    if attr_int(n, "spatial", 1) != 1:
        raise UnsupportedOpsError(f"BatchNormalization {n.name!r} has spatial=0 (opset < 9)")
    x, scale, bias, mean, var = (b.input(n, i) for i in range(5))
    eps = attr_float(n, "epsilon", 1e-5)
    return b.emit("aten.batch_norm.default", x, scale, bias, mean, var, False, 0.1, eps, False)


def _pool_args(n: OnnxNode, x: Val) -> tuple[int, list[int], list[int], list[int], list[int]]:
    k = _spatial(n, x, "pooling")
    kernel = attr_ints(n, "kernel_shape")
    if kernel is None or len(kernel) != k:
        raise UnsupportedOpsError(f"{n.op_type} {n.name!r} has kernel_shape {kernel}")
    strides = attr_ints(n, "strides") or [1] * k  # ONNX default: 1, unlike torch
    dil = attr_ints(n, "dilations") or [1] * k
    if dil != [1] * k and attr_str(n, "auto_pad", "NOTSET").startswith("SAME"):
        raise UnsupportedOpsError(  # onnxruntime pads these as if undilated, against the spec
            f"{n.op_type} {n.name!r} combines dilations {dil} with auto_pad SAME, which "
            "runtimes disagree on; export with explicit pads"
        )
    return k, kernel, strides, dil, _pads(n, x, kernel, strides, dil)


def max_pool(b: GraphBuilder, n: OnnxNode) -> Val:
    """``max_pool{1,2}d``; pads torch cannot take (uneven, over half the kernel) pad with -inf."""
    x = b.input(n, 0)
    k, kernel, strides, dil, pads = _pool_args(n, x)
    x, padding = _pad_input(b, x, pads, -math.inf, [kk // 2 for kk in kernel])  # torch's limit
    ceil = bool(attr_int(n, "ceil_mode", 0))
    return b.emit(f"aten.max_pool{k}d.default", x, kernel, strides, padding, dil, ceil)


def avg_pool(b: GraphBuilder, n: OnnxNode) -> Val:
    """``avg_pool{1,2}d``; uneven pads only with ``count_include_pad=1`` (zero padding)."""
    x = b.input(n, 0)
    k, kernel, strides, dil, pads = _pool_args(n, x)
    if dil != [1] * k:
        raise UnsupportedOpsError(f"AveragePool {n.name!r} has dilations {dil}; MPQ needs 1")
    include = bool(attr_int(n, "count_include_pad", 0))
    limit = [kk // 2 for kk in kernel]
    if include:
        x, padding = _pad_input(b, x, pads, 0.0, limit)
    elif pads[:k] == pads[k:] and all(p <= m for p, m in zip(pads, limit, strict=False)):
        padding = pads[:k]
    else:
        raise UnsupportedOpsError(
            f"AveragePool {n.name!r} has pads {pads} (asymmetric or over half the kernel "
            f"{kernel}) with count_include_pad=0, which torch cannot express; pad symmetrically"
        )
    ceil = bool(attr_int(n, "ceil_mode", 0))
    return b.emit(f"aten.avg_pool{k}d.default", x, kernel, strides, padding, ceil, include)


def global_avg_pool(b: GraphBuilder, n: OnnxNode) -> Val:
    """Mean over every spatial dim, kept: ``mean.dim(x, [2, ...], True)``."""
    x = b.input(n, 0)
    return b.emit("aten.mean.dim", x, list(range(2, x.dim())), True)


def softmax(b: GraphBuilder, n: OnnxNode) -> Val:
    """Opset >= 13: (log-)softmax over ``axis``. Before: over all dims from ``axis`` on, as one."""
    x = b.input(n, 0)
    op = "aten.softmax.int" if n.op_type == "Softmax" else "aten.log_softmax.int"
    axis = normalize_axis(attr_int(n, "axis", -1 if b.opset >= 13 else 1), x.dim(), n)
    if b.opset >= 13 or axis == x.dim() - 1:
        return b.emit(op, x, axis)
    flat = [math.prod(x.shape[:axis]), math.prod(x.shape[axis:])]
    y = b.emit(op, b.emit("aten.reshape.default", x, flat), 1)
    return b.emit("aten.reshape.default", y, x.shape)


def layer_norm(b: GraphBuilder, n: OnnxNode) -> Val:
    """``layer_norm(x, shape[axis:], scale, B, epsilon)``; scale and B of exactly that shape."""
    x, scale, bias = b.input(n, 0), b.input(n, 1), b.optional(n, 2)
    axis = normalize_axis(attr_int(n, "axis", -1), x.dim(), n)
    shape = x.shape[axis:]
    for v in (scale, bias):
        if v is not None and v.shape != shape:
            raise UnsupportedOpsError(
                f"LayerNormalization {n.name!r} has a scale/bias of shape {v.shape}; MPQ "
                f"needs exactly the normalized shape {shape}"
            )
    eps = attr_float(n, "epsilon", 1e-5)
    return b.emit("aten.layer_norm.default", x, shape, scale, bias, eps, False)


NN_CONVERTERS = {
    "Conv": conv,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": batch_norm,
    "MaxPool": max_pool,
    "AveragePool": avg_pool,
    "GlobalAveragePool": global_avg_pool,
    "Softmax": softmax,
    "LogSoftmax": softmax,
    "LayerNormalization": layer_norm,
}
