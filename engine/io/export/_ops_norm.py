"""ATen -> ONNX: normalisation layers (eval mode) and weight norm.

- ``layer_norm(x, shape, w, b, eps)`` -> ``LayerNormalization(axis=-len(shape))``;
  ``native_layer_norm`` -> the same node with its three outputs ``(y, mean, 1/std)``,
  torch's ``(y, mean, rstd)``, read by ``getitem``;
- ``batch_norm`` (eval) -> ``BatchNormalization`` with the running statistics;
- ``group_norm(x, G, w, b, eps)`` -> ``GroupNormalization(num_groups=G)`` (opset 21:
  per-channel scale and bias, as torch);
- ``instance_norm(x, w, b, mean, var, use_input_stats, ...)`` ->
  ``InstanceNormalization``, or ``BatchNormalization`` on the running statistics when
  ``use_input_stats`` is false;
- ``_weight_norm(v, g, dim) = v * g / ||v||``, the L2 norm over every axis but ``dim``
  (``ReduceL2(keepdims=1)``; ``dim=-1``: over the whole tensor, as torch).

A missing weight is ones and a missing bias zeros, over the channels (axis 1).
"""

from __future__ import annotations

from typing import Any

import torch

from engine.errors import UnsupportedExportError
from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, pos
from engine.ir import Node

__all__ = ["NORM_OPS"]


def _affine(b: GraphBuilder, n: Node, weight: Any, bias: Any, channels: int) -> list[str]:
    """The ONNX scale and shift inputs: the IR's tensors, or ones / zeros of ``channels``."""
    dtype = b.meta[pos(n)[0].name].dtype
    scale = b.value(weight) if weight is not None else b.constant(torch.ones(channels, dtype=dtype))
    shift = b.value(bias) if bias is not None else b.constant(torch.zeros(channels, dtype=dtype))
    return [scale, shift]


def _layer_norm(b: GraphBuilder, n: Node) -> None:
    shape = [int(d) for d in pos(n)[1]]
    x_meta = b.meta[pos(n)[0].name]
    weight, bias = arg(n, 2, "weight"), arg(n, 3, "bias")
    scale = b.value(weight) if weight is not None else b.constant(torch.ones(shape))
    inputs = [b.value(pos(n)[0]), scale] + ([b.value(bias)] if bias is not None else [])
    attrs: dict[str, Any] = {
        "axis": len(x_meta.shape) - len(shape),
        "epsilon": float(arg(n, 4, "eps", 1e-5)),
    }
    if n.op == "aten.native_layer_norm.default":
        b.outputs[n.name] = b.add_multi("LayerNormalization", inputs, 3, hint=n.name, **attrs)
    else:
        b.add("LayerNormalization", inputs, out=n.name, **attrs)


def _batch_norm(b: GraphBuilder, n: Node) -> None:
    if arg(n, 5, "training", False):
        raise UnsupportedExportError(f"{n.name}: batch norm in training mode is not exported")
    c = b.meta[pos(n)[0].name].shape[1]
    affine = _affine(b, n, arg(n, 1, "weight"), arg(n, 2, "bias"), c)
    stats = [b.value(pos(n)[3]), b.value(pos(n)[4])]
    eps = float(arg(n, 7, "eps", 1e-5))
    b.add("BatchNormalization", [b.value(pos(n)[0]), *affine, *stats], out=n.name, epsilon=eps)


def _group_norm(b: GraphBuilder, n: Node) -> None:
    c = b.meta[pos(n)[0].name].shape[1]
    affine = _affine(b, n, arg(n, 2, "weight"), arg(n, 3, "bias"), c)
    groups, eps = int(pos(n)[1]), float(arg(n, 4, "eps", 1e-5))
    b.add(
        "GroupNormalization",
        [b.value(pos(n)[0]), *affine],
        out=n.name,
        num_groups=groups,
        epsilon=eps,
    )


def _instance_norm(b: GraphBuilder, n: Node) -> None:
    c = b.meta[pos(n)[0].name].shape[1]
    affine = _affine(b, n, arg(n, 1, "weight"), arg(n, 2, "bias"), c)
    eps = float(arg(n, 7, "eps", 1e-5))
    x = b.value(pos(n)[0])
    if arg(n, 5, "use_input_stats", True):
        b.add("InstanceNormalization", [x, *affine], out=n.name, epsilon=eps)
        return
    mean, var = arg(n, 3, "running_mean"), arg(n, 4, "running_var")
    if mean is None or var is None:
        raise UnsupportedExportError(f"{n.name}: instance norm without input stats or running ones")
    stats = [b.value(mean), b.value(var)]
    b.add("BatchNormalization", [x, *affine, *stats], out=n.name, epsilon=eps)


def _weight_norm(b: GraphBuilder, n: Node) -> None:
    v, g = pos(n)[0], pos(n)[1]
    rank = len(b.meta[v.name].shape)
    dim = int(arg(n, 2, "dim", 0))
    axes = list(range(rank)) if dim == -1 else [d for d in range(rank) if d != dim % rank]
    norm = b.add("ReduceL2", [b.value(v), b.ints(axes)], hint=n.name, keepdims=1)
    gain = b.add("Div", [b.value(g), norm], hint=n.name)
    b.add("Mul", [b.value(v), gain], out=n.name)


_A = "aten."
NORM_OPS: dict[str, Converter] = {
    _A + "layer_norm.default": _layer_norm,
    _A + "native_layer_norm.default": _layer_norm,
    _A + "batch_norm.default": _batch_norm,
    _A + "group_norm.default": _group_norm,
    _A + "instance_norm.default": _instance_norm,
    _A + "_weight_norm.default": _weight_norm,
}
