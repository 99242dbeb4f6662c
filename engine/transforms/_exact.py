"""A runnable model whose layers sum in an order-free way: the same outputs at any thread count.

Float32 convolutions and matrix products sum their terms in an order that depends on the
kernel, the thread count and the CPU; the last bits of a layer's output then differ
between runs, and in a simulated quantized model a difference of one unit in the last
place moves ``x / s`` across a rounding boundary (``round`` at ``.5``, or the clamp) of the
next activation fake-quant now and then. Such a flip changes an activation by a whole
step and cascades. :func:`deterministic_module` removes the cause:

- a layer (conv1d/conv2d, linear, addmm, matmul with a stored operand) whose activation
  passes through ``fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)`` runs on the
  integer codes ``c = q - z = round(fq(x) / s)`` and its float32 weight ``W``, both in
  float64, with the bias left out; the result is ``y = float32(s * acc + b)``, where
  ``acc = sum_k c_k W_k``. Every ``c_k W_k`` is exact in float64 (9 + 24 significant
  bits for 8-bit codes) and so is every partial sum while ``K * max|c| * max|W| / u < 2^53``,
  where ``u`` is a power of two dividing all of one output channel's weights
  (:func:`exact_bound`). For an affine weight ``W = float32(w_code * s_w)`` of ``b`` bits
  ``max|W| / u < 2^(b + 23)``: with 8-bit activations and 8-bit weights the sum is exact
  for ``K < 2^14`` terms, with 4-bit weights for ``K < 2^18``. An exact sum does not
  depend on the order of its terms, so ``acc`` -- and ``y``, computed element by element
  -- is the same for any thread count, kernel or CPU;
- every other such layer (float input: fp32 layers, weight-only formats, the float
  model itself) runs in float64 on its float32 operands and rounds once to float32. The
  products are exact and the sum's error is ``~ sqrt(K) * 2^-53`` relative, so the
  float32 result differs between orders only when the exact value lies that close to
  a float32 rounding boundary (about ``sqrt(K) * 2^-29`` of outputs, 1 in 10^7 for
  ``K = 1000``); not a guarantee, but 2^29 times rarer than in float32.

Elementwise ops round each element once (IEEE), and the remaining reductions (softmax,
layer norm, pooling, attention) compute one output per thread, so on one machine the
model's outputs are bitwise the same at any thread count (tests/engine/transforms/
test_exact.py checks EfficientNet-Lite2 at 1 and 2 threads). Across machines the
quantized layers are still exact, but vectorized transcendental functions (exp, erf,
tanh) and vectorized reductions may round differently with another instruction set.

Cost: float64 convolutions are 2-4x slower than float32 on a CPU, depthwise ones more;
a whole evaluation 3-5x (bench/determinism.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import fx

from engine.ir import CONV_OPS, LINEAR_OPS, MATMUL_OPS, IRModel, Node, Ref, resolve, to_graph_module

__all__ = ["deterministic_module", "exact_bound"]

_FAKE_QUANT = "aten.fake_quantize_per_tensor_affine.default"
_LAYER_OPS = CONV_OPS | LINEAR_OPS | MATMUL_OPS


def deterministic_module(model: IRModel) -> fx.GraphModule:
    """``model`` as a GraphModule whose layers sum in float64 (see the module doc).

    The graph is :func:`engine.ir.to_graph_module`'s with each layer node calling
    :func:`layer_in_float64` instead of its op; everything else is unchanged.
    """
    gm = to_graph_module(model)
    nodes = {n.name: n for n in model.nodes}
    changed = False
    for fx_node in gm.graph.nodes:
        n = nodes.get(fx_node.meta.get("mpq_name", ""))
        if n is None or n.op not in _LAYER_OPS or _weight_index(n, model) is None:
            continue
        act, scale = _activation(n, model, nodes)
        fx_node.target = layer_in_float64
        fx_node.args = (n.op, act, scale, *fx_node.args)
        changed = True
    if changed:
        gm.recompile()
    return gm


def layer_in_float64(op: str, act: int, scale: float, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Run layer ``op`` in float64 and round its output to the activation's dtype once.

    Args:
        op: the layer's op name (conv/linear/addmm/matmul).
        act: position of the activation operand in ``args``.
        scale: the activation fake-quant's scale ``s`` when ``args[act]`` is its output
            (``s * c`` with integer ``c``), else 0: then the operands are used as they are.
        args, kwargs: the op's operands.

    Returns:
        ``float32(s * op(c, W) + b)`` with the bias ``b`` added after scaling, or
        ``float32(op(x, W, b))`` in float64 when ``scale`` is 0.
    """
    fn = resolve(op)
    x = args[act]
    out_dtype = x.dtype
    wide = [_f64(a) for a in args]
    kw = {k: _f64(v) for k, v in kwargs.items()}
    if not scale:
        return fn(*wide, **kw).to(out_dtype)  # type: ignore[no-any-return]
    # the codes c = q - z: exact, since |c| * s rounds to fq(x) with relative error 2^-24
    wide[act] = torch.round(x.double() / scale)
    bias, where = None, _bias_position(op, wide, kw)
    if where == "args0":  # addmm(b, x, W): b + x @ W
        bias, wide[0] = wide[0], torch.zeros((), dtype=torch.float64)
    elif where == "args2":
        bias, wide[2] = wide[2], None
    elif where == "kwarg":
        bias = kw.pop("bias")
    y = fn(*wide, **kw) * scale
    if bias is not None:
        # a conv's bias is per channel, dim 1 of its [N, C, *spatial] output
        y = y + (bias.reshape(-1, *[1] * (y.dim() - 2)) if op in CONV_OPS else bias)
    return y.to(out_dtype)  # type: ignore[no-any-return]


def exact_bound(weight: torch.Tensor, codes_max: int, k: int) -> float:
    """``K * max|c| * max_c(max|W_c| / u_c)``: the float64 layer sum is exact when below 2^53.

    Args:
        weight: float weight, output channel first (``[C_out, ...]``; a matmul's stored
            ``[K, N]`` operand transposed).
        codes_max: the largest ``|q - z|`` of the activation's codes.
        k: the number of terms of one output's sum.

    ``u_c = 2^(e_min - 24)``, with ``e_min`` the smallest ``frexp`` exponent of channel
    ``c``'s nonzero weights, divides every float32 weight of the channel (24-bit
    significands), so each term is an integer multiple of ``u_c``; channels of zeros count 0.
    A sufficient bound: it assumes every significand bit is used.
    """
    w = weight.double().reshape(weight.shape[0], -1)
    # w = m * 2^e with 0.5 <= |m| < 1, and a float32 m has 24 bits: w = (m * 2^24) * 2^(e - 24)
    _, exponent = torch.frexp(w)
    units = torch.where(w != 0, exponent - 24, torch.iinfo(torch.int32).max)
    low = units.min(dim=1).values.clamp(max=1024).double()
    top = w.abs().max(dim=1).values
    ratio = torch.where(top > 0, top / torch.exp2(low), torch.zeros_like(top))
    return float(k * codes_max * ratio.max()) if ratio.numel() else 0.0


def _f64(v: Any) -> Any:
    return v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v


def _bias_position(op: str, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    if op == "aten.addmm.default":
        return "args0"
    if op in CONV_OPS or op == "aten.linear.default":
        if len(args) > 2 and args[2] is not None:
            return "args2"
        if kwargs.get("bias") is not None:
            return "kwarg"
    return None


def _weight_index(n: Node, model: IRModel) -> int | None:
    """Position of the stored float weight operand of a layer node, else None."""
    positions: tuple[int, ...] = (2,) if n.op == "aten.addmm.default" else (1,)
    if n.op in MATMUL_OPS:
        positions = (0, 1)
    for i in positions:
        a = n.args[i] if i < len(n.args) else None
        if (
            isinstance(a, Ref)
            and a.name in model.tensors
            and model.tensors[a.name].is_floating_point()
        ):
            return i
    return None


def _activation(n: Node, model: IRModel, nodes: dict[str, Node]) -> tuple[int, float]:
    """The activation operand's position and its fake-quant scale (0 when not fake-quantized)."""
    if n.op == "aten.addmm.default":
        act = 1
    elif n.op in MATMUL_OPS:
        act = 1 - (_weight_index(n, model) or 0)
    else:
        act = 0
    src = n.args[act] if act < len(n.args) else None
    fq = nodes.get(src.name) if isinstance(src, Ref) else None
    if fq is None or fq.op != _FAKE_QUANT:
        return act, 0.0
    scale = float(fq.args[1])  # type: ignore[arg-type]
    return act, scale if math.isfinite(scale) and scale > 0 else 0.0
