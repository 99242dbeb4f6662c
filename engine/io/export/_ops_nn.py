"""ATen -> ONNX: layers (conv, linear, matmul, embedding), attention, fake-quant.

Formulas (torch semantics, written with ONNX ops):

- ``linear(x, W, b) = x @ W^T + b``: ``MatMul(x, W^T) (+ Add b)``; ``W^T`` is
  taken from storage already transposed (see :mod:`engine.io.export._weights`);
- ``addmm(c, a, w, beta, alpha) = beta * c + alpha * (a @ w)``: ``Gemm``;
  ``baddbmm(c, a, w, beta, alpha)``: the same batched, ``MatMul`` then ``Mul`` / ``Add``
  (``beta = 0`` drops ``c``); ``einsum(eq, xs)`` -> ``Einsum(equation=eq)``;
- ``scaled_dot_product_attention(q, k, v, mask) =
  softmax(q @ k^T * scale + mask) @ v`` with ``scale = 1/sqrt(E)`` by default,
  a boolean mask applied as ``Where(mask, s, -inf)``, ``is_causal`` as an
  upper-triangular ``-inf`` mask; with ``enable_gqa`` each key/value head is
  repeated ``H_q / H_kv`` times first (``Unsqueeze``, ``Expand``, ``Reshape``);
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
from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, int_list, operand, pos
from engine.io.export._tensors import INT4, INT8, INT16, UINT4, UINT8, UINT16, pack_int4
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


def _conv(b: GraphBuilder, n: Node) -> None:
    w_shape = b.meta[pos(n)[1].name].shape
    k = len(w_shape) - 2
    stride = int_list(arg(n, 3, "stride", 1), k)
    padding = arg(n, 4, "padding", 0)
    dilation = int_list(arg(n, 5, "dilation", 1), k)
    if padding == "valid":
        pads = [0] * (2 * k)
    elif padding == "same":
        total = [d * (s - 1) for d, s in zip(dilation, w_shape[2:], strict=True)]
        pads = [t // 2 for t in total] + [t - t // 2 for t in total]  # extra at the end
    else:
        pads = int_list(padding, k) * 2
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


def _heads(b: GraphBuilder, ref: Any, heads: int, hint: str) -> str:
    """Key/value ``[..., H, S, E]`` with each head repeated to ``heads`` (torch's GQA:
    ``repeat_interleave`` on axis -3): ``Unsqueeze``, ``Expand``, ``Reshape``."""
    shape = b.meta[ref.name].shape
    rank, groups = len(shape), heads // shape[-3]
    if groups == 1:
        return b.value(ref)
    x = b.add("Unsqueeze", [b.value(ref), b.ints([rank - 2])], hint=hint)
    x = b.add("Expand", [x, b.ints([*shape[:-2], groups, *shape[-2:]])], hint=hint)
    return b.add("Reshape", [x, b.ints([*shape[:-3], heads, *shape[-2:]])], hint=hint)


def _sdpa(b: GraphBuilder, n: Node) -> None:
    q_ref, k_ref, v_ref = pos(n)[0], pos(n)[1], pos(n)[2]
    if float(arg(n, 4, "dropout_p", 0.0)) != 0.0:
        raise UnsupportedExportError(f"{n.name}: attention with dropout is not exported")
    q_shape, k_shape = b.meta[q_ref.name].shape, b.meta[k_ref.name].shape
    rank = len(k_shape)
    gqa = bool(arg(n, 7, "enable_gqa", False)) and rank >= 3
    k, v = b.value(k_ref), b.value(v_ref)
    if gqa:
        k, v = _heads(b, k_ref, q_shape[-3], n.name), _heads(b, v_ref, q_shape[-3], n.name)
    perm = [*range(rank - 2), rank - 1, rank - 2]
    k_t = b.add("Transpose", [k], hint=n.name, perm=perm)
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
    b.add("MatMul", [probs, v], out=n.name)


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
    _A + "scaled_dot_product_attention.default": _sdpa,
    _A + "fake_quantize_per_tensor_affine.default": _fake_quant,
}
