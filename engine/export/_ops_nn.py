"""ATen -> ONNX: layers (conv, linear, matmul, embedding), pooling, attention, fake-quant.

Formulas (torch semantics, written with ONNX ops):

- ``linear(x, W, b) = x @ W^T + b``: ``MatMul(x, W^T) (+ Add b)``; ``W^T`` is
  taken from storage already transposed (see :mod:`engine.export._weights`);
- ``addmm(c, a, w, beta, alpha) = beta * c + alpha * (a @ w)``: ``Gemm``;
  ``baddbmm(c, a, w, beta, alpha)``: the same batched, ``MatMul`` then ``Mul`` / ``Add``
  (``beta = 0`` drops ``c``); ``einsum(eq, xs)`` -> ``Einsum(equation=eq)``;
- ``scaled_dot_product_attention(q, k, v, mask) =
  softmax(q @ k^T * scale + mask) @ v`` with ``scale = 1/sqrt(E)`` by default,
  a boolean mask applied as ``Where(mask, s, -inf)``, ``is_causal`` as an
  upper-triangular ``-inf`` mask;
- ``fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)``:
  ``DequantizeLinear(QuantizeLinear(x, s, z), s, z)`` with the zero point's
  type the narrowest of uint8, int8, uint16, int16 holding ``[qmin, qmax]``
  (4-bit ranges use 8 bits + Clip: see ``_ACT_TYPES``).
  ONNX rounds ``x / s`` where torch rounds ``x * (1/s)``: the two can differ by
  one step when ``x / s`` lies within a float32 ulp of a rounding boundary.
  A range narrower than its storage type adds ``Clip`` to
  ``[(qmin - z) s, (qmax - z) s]``, the same values as clamping the codes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from engine.errors import UnsupportedExportError
from engine.export._builder import GraphBuilder
from engine.export._ops_tensor import Converter, arg, operand, pos
from engine.export._tensors import INT4, INT8, INT16, UINT4, UINT8, UINT16, pack_int4
from engine.ir import Node

__all__ = ["NN_OPS", "activation_storage"]

# Narrowest first. No 4-bit types: with its default (full) graph optimizations onnxruntime 1.32
# moves a uint4 Q/DQ pair across MaxPool and then refuses its own graph ("Type 'tensor(uint4)' of
# input parameter ... of operator (MaxPool) ... is invalid"), so 4-bit ranges use 8 bits + Clip.
_ACT_TYPES = [
    ((0, 255), UINT8, "uint8"),
    ((-128, 127), INT8, "int8"),
    ((0, 65535), UINT16, "uint16"),
    ((-32768, 32767), INT16, "int16"),
]


_NUMPY = {UINT8: "<u1", INT8: "<i1", UINT16: "<u2", INT16: "<i2"}


def activation_storage(qmin: int, qmax: int) -> tuple[int, str, bool]:
    """(ONNX type, its name, needs a Clip) of a fake-quant range: the narrowest type holding it.

    Raises:
        UnsupportedExportError: the range fits none of the QDQ types.
    """
    for (lo, hi), code, name in _ACT_TYPES:
        if lo <= qmin and qmax <= hi:
            return code, name, (lo, hi) != (qmin, qmax)
    raise UnsupportedExportError(f"activation code range [{qmin}, {qmax}] fits no ONNX type")


def _ints(v: object, n: int) -> list[int]:
    """An int-or-list argument as a list of ``n`` ints."""
    if isinstance(v, int):
        return [v] * n
    assert isinstance(v, list)
    out = [int(x) for x in v]
    return out * n if len(out) == 1 else out


def _conv(b: GraphBuilder, n: Node) -> None:
    w_shape = b.meta[pos(n)[1].name].shape
    k = len(w_shape) - 2
    stride = _ints(arg(n, 3, "stride", 1), k)
    padding = arg(n, 4, "padding", 0)
    dilation = _ints(arg(n, 5, "dilation", 1), k)
    if padding == "valid":
        pads = [0] * (2 * k)
    elif padding == "same":
        total = [d * (s - 1) for d, s in zip(dilation, w_shape[2:], strict=True)]
        pads = [t // 2 for t in total] + [t - t // 2 for t in total]  # extra at the end
    else:
        pads = _ints(padding, k) * 2
    inputs = [b.value(pos(n)[0]), b.value(pos(n)[1])]
    bias = arg(n, 2, "bias")
    if bias is not None:
        inputs.append(b.value(bias))
    attrs: dict[str, Any] = {"strides": stride, "pads": pads, "dilations": dilation}
    b.add("Conv", inputs, out=n.name, group=int(arg(n, 6, "groups", 1)), **attrs)


def _linear(b: GraphBuilder, n: Node) -> None:
    bias = arg(n, 2, "bias")
    y = b.add(
        "MatMul",
        [b.value(pos(n)[0]), b.value(pos(n)[1], transpose=True)],
        out=None if bias is not None else n.name,
        hint=n.name,
    )
    if bias is not None:
        b.add("Add", [y, b.value(bias)], out=n.name)


def _addmm(b: GraphBuilder, n: Node) -> None:
    beta, alpha = float(arg(n, 3, "beta", 1)), float(arg(n, 4, "alpha", 1))
    inputs = [b.value(pos(n)[1]), b.value(pos(n)[2]), b.value(pos(n)[0])]
    b.add("Gemm", inputs, out=n.name, alpha=alpha, beta=beta)


def _matmul(b: GraphBuilder, n: Node) -> None:
    b.add("MatMul", [b.value(pos(n)[0]), b.value(pos(n)[1])], out=n.name)


def _baddbmm(b: GraphBuilder, n: Node) -> None:
    dtype = b.meta[n.name].dtype
    beta, alpha = arg(n, 3, "beta", 1), arg(n, 4, "alpha", 1)
    product = b.add("MatMul", [b.value(pos(n)[1]), b.value(pos(n)[2])], hint=n.name)
    if alpha != 1:
        product = b.add("Mul", [product, b.scalar(alpha, dtype)], hint=n.name)
    if beta == 0:  # torch ignores the input then (its NaNs too)
        b.add("Identity", [product], out=n.name)
        return
    shift = b.value(pos(n)[0])
    if beta != 1:
        shift = b.add("Mul", [shift, b.scalar(beta, dtype)], hint=n.name)
    b.add("Add", [shift, product], out=n.name)


def _einsum(b: GraphBuilder, n: Node) -> None:
    equation, operands = str(pos(n)[0]), [b.value(v) for v in pos(n)[1]]
    b.add("Einsum", operands, out=n.name, equation=equation)


def _embedding(b: GraphBuilder, n: Node) -> None:
    b.add("Gather", [b.value(pos(n)[0]), b.value(pos(n)[1])], out=n.name, axis=0)


def _pool(op_type: str, k: int) -> Converter:
    def convert(b: GraphBuilder, n: Node) -> None:
        kernel = _ints(pos(n)[1], k)
        stride = arg(n, 2, "stride", [])
        stride = kernel if stride in ([], None) else _ints(stride, k)
        pads = _ints(arg(n, 3, "padding", 0), k) * 2
        attrs: dict[str, Any] = {"kernel_shape": kernel, "strides": stride}
        if op_type == "MaxPool":
            attrs["dilations"] = _ints(arg(n, 4, "dilation", 1), k)
            attrs["ceil_mode"] = int(bool(arg(n, 5, "ceil_mode", False)))
        else:
            attrs["ceil_mode"] = int(bool(arg(n, 4, "ceil_mode", False)))
            attrs["count_include_pad"] = int(bool(arg(n, 5, "count_include_pad", True)))
            if arg(n, 6, "divisor_override") is not None:
                raise UnsupportedExportError(f"{n.name}: avg_pool divisor_override")
        b.add(op_type, [b.value(pos(n)[0])], out=n.name, pads=pads, **attrs)

    return convert


def _adaptive_avg(b: GraphBuilder, n: Node) -> None:
    in_shape = b.meta[pos(n)[0].name].shape
    out_size = b.meta[n.name].shape[2:]
    x = b.value(pos(n)[0])
    if all(o == 1 for o in out_size):
        b.add("GlobalAveragePool", [x], out=n.name)
        return
    if any(i % o for i, o in zip(in_shape[2:], out_size, strict=True)):
        raise UnsupportedExportError(
            f"{n.name}: adaptive average pooling from {in_shape[2:]} to {list(out_size)} has "
            "uneven windows; only output size 1 or sizes dividing the input are exported"
        )
    kernel = [i // o for i, o in zip(in_shape[2:], out_size, strict=True)]
    b.add("AveragePool", [x], out=n.name, kernel_shape=kernel, strides=kernel)


def _sdpa(b: GraphBuilder, n: Node) -> None:
    q_ref, k_ref = pos(n)[0], pos(n)[1]
    if arg(n, 7, "enable_gqa", False) or float(arg(n, 4, "dropout_p", 0.0)) != 0.0:
        raise UnsupportedExportError(f"{n.name}: attention with GQA or dropout is not exported")
    q_shape, k_shape = b.meta[q_ref.name].shape, b.meta[k_ref.name].shape
    rank = len(k_shape)
    perm = [*range(rank - 2), rank - 1, rank - 2]
    k_t = b.add("Transpose", [b.value(k_ref)], hint=n.name, perm=perm)
    scores = b.add("MatMul", [b.value(q_ref), k_t], hint=n.name)
    scale = arg(n, 6, "scale")
    scale = 1.0 / math.sqrt(q_shape[-1]) if scale is None else float(scale)
    scores = b.add("Mul", [scores, b.scalar(scale, torch.float32)], hint=n.name)
    mask = arg(n, 3, "attn_mask")
    if mask is not None:
        if b.meta[mask.name].dtype == torch.bool:
            neg = b.scalar(-math.inf, torch.float32)
            scores = b.add("Where", [b.value(mask), scores, neg], hint=n.name)
        else:
            scores = b.add("Add", [scores, operand(b, mask, torch.float32)], hint=n.name)
    if arg(n, 5, "is_causal", False):
        lq, lk = q_shape[-2], k_shape[-2]
        causal = torch.full((lq, lk), -math.inf).triu(1)
        scores = b.add("Add", [scores, b.constant(causal, "causal")], hint=n.name)
    probs = b.add("Softmax", [scores], hint=n.name, axis=-1)
    b.add("MatMul", [probs, b.value(pos(n)[2])], out=n.name)


def _fake_quant(b: GraphBuilder, n: Node) -> None:
    x, scale, zp, qmin, qmax = pos(n)[:5]
    assert isinstance(qmin, int) and isinstance(qmax, int) and isinstance(zp, int)
    code, _, clip = activation_storage(qmin, qmax)
    s = b.scalar(float(scale), torch.float32)
    if code in (INT4, UINT4):
        raw = pack_int4(torch.tensor([zp]), signed=code == INT4)
    else:
        raw = np.array(zp, dtype=_NUMPY[code]).tobytes()
    z = b.initializer(b.fresh(f"{n.name}/zp"), code, (), raw)
    qx = b.add("QuantizeLinear", [b.value(x), s, z], hint=n.name)
    if not clip:
        b.add("DequantizeLinear", [qx, s, z], out=n.name)
        return
    dq = b.add("DequantizeLinear", [qx, s, z], hint=n.name)
    f32 = torch.float32
    lo = torch.tensor(float(qmin - zp), dtype=f32) * torch.tensor(float(scale), dtype=f32)
    hi = torch.tensor(float(qmax - zp), dtype=f32) * torch.tensor(float(scale), dtype=f32)
    b.add("Clip", [dq, b.constant(lo), b.constant(hi)], out=n.name)


_A = "aten."
NN_OPS: dict[str, Converter] = {
    _A + "conv1d.default": _conv,
    _A + "conv2d.default": _conv,
    _A + "conv1d.padding": _conv,
    _A + "conv2d.padding": _conv,
    _A + "linear.default": _linear,
    _A + "addmm.default": _addmm,
    _A + "mm.default": _matmul,
    _A + "bmm.default": _matmul,
    _A + "matmul.default": _matmul,
    _A + "baddbmm.default": _baddbmm,
    _A + "einsum.default": _einsum,
    _A + "embedding.default": _embedding,
    _A + "max_pool1d.default": _pool("MaxPool", 1),
    _A + "max_pool2d.default": _pool("MaxPool", 2),
    _A + "avg_pool1d.default": _pool("AveragePool", 1),
    _A + "avg_pool2d.default": _pool("AveragePool", 2),
    _A + "adaptive_avg_pool1d.default": _adaptive_avg,
    _A + "adaptive_avg_pool2d.default": _adaptive_avg,
    _A + "scaled_dot_product_attention.default": _sdpa,
    _A + "fake_quantize_per_tensor_affine.default": _fake_quant,
}
