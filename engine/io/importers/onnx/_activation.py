"""ONNX activations with parameters -> ATen.

- ``LeakyRelu(alpha)`` -> ``leaky_relu(x, alpha)``; ``Elu(alpha)`` -> ``elu(x, alpha)``;
- ``Selu(alpha, gamma)`` -> ``selu(x)`` at torch's constants, else
  ``elu(x, alpha, scale=gamma)`` (``gamma * (x if x > 0 else alpha * (exp(x) - 1))``);
- ``PRelu(x, slope)`` -> ``prelu(x, w[C])`` when the slope is one value per channel (dim 1)
  or a single value, else ``where(x < 0, x * slope, x)``;
- ``Gelu(approximate)`` (opset 20) -> ``gelu(x, approximate)``;
- ``Softsign`` -> ``x / (1 + |x|)``; ``ThresholdedRelu(alpha)`` -> ``where(x > alpha, x, 0)``;
- ``Celu(alpha)`` -> ``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``, as
  ``elu(x, alpha, 1, 1 / alpha)``.
"""

from __future__ import annotations

import math

from engine.errors import UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_float, attr_str
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode

__all__ = ["ACTIVATION_CONVERTERS"]

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def leaky_relu(b: GraphBuilder, n: OnnxNode) -> Val:
    """``leaky_relu(x, alpha)`` (default 0.01)."""
    return b.emit("aten.leaky_relu.default", b.input(n, 0), attr_float(n, "alpha", 0.01))


def elu(b: GraphBuilder, n: OnnxNode) -> Val:
    """``elu(x, alpha)`` (default 1)."""
    return b.emit("aten.elu.default", b.input(n, 0), attr_float(n, "alpha", 1.0))


def celu(b: GraphBuilder, n: OnnxNode) -> Val:
    """``elu(x, alpha, 1, 1 / alpha)`` (default alpha 1)."""
    alpha = attr_float(n, "alpha", 1.0)
    if alpha == 0:
        raise UnsupportedOpsError(f"Celu {n.name!r} has alpha 0")
    return b.emit("aten.elu.default", b.input(n, 0), alpha, 1.0, 1 / alpha)


def selu(b: GraphBuilder, n: OnnxNode) -> Val:
    """``selu(x)`` at the standard constants, else ``elu(x, alpha, gamma)``."""
    x = b.input(n, 0)
    alpha, gamma = attr_float(n, "alpha", _SELU_ALPHA), attr_float(n, "gamma", _SELU_SCALE)
    if math.isclose(alpha, _SELU_ALPHA, rel_tol=1e-6) and math.isclose(
        gamma, _SELU_SCALE, rel_tol=1e-6
    ):
        return b.emit("aten.selu.default", x)
    return b.emit("aten.elu.default", x, alpha, gamma)


def prelu(b: GraphBuilder, n: OnnxNode) -> Val:
    """``x`` where ``x >= 0``, ``slope * x`` elsewhere; ``slope`` broadcasts to ``x``."""
    x, slope = b.input(n, 0), b.input(n, 1)
    aligned = [1] * (x.dim() - slope.dim()) + slope.shape
    channels = x.shape[1] if x.dim() >= 2 else 0
    per_channel = len(aligned) == x.dim() and all(d == 1 for i, d in enumerate(aligned) if i != 1)
    if x.dim() >= 2 and per_channel and aligned[1] in (1, channels) and slope.dtype == x.dtype:
        weight = slope
        if slope.dim() != 1:
            key = f"flat{aligned[1]}"
            if slope.const is not None:
                weight = b.derived(slope, key, lambda t: t.reshape(-1))
            else:
                weight = b.emit("aten.reshape.default", slope, [aligned[1]], tag="slope")
        return b.emit("aten.prelu.default", x, weight)
    negative = b.emit("aten.lt.Scalar", x, 0, tag="negative")
    scaled = b.emit("aten.mul.Tensor", x, slope, tag="scaled")
    return b.emit("aten.where.self", negative, scaled, x)


def gelu(b: GraphBuilder, n: OnnxNode) -> Val:
    """``gelu(x, approximate="none" | "tanh")``."""
    approximate = attr_str(n, "approximate", "none")
    if approximate not in ("none", "tanh"):
        raise UnsupportedOpsError(f"Gelu {n.name!r} has approximate={approximate!r}")
    return b.emit("aten.gelu.default", b.input(n, 0), approximate=approximate)


def softsign(b: GraphBuilder, n: OnnxNode) -> Val:
    """``x / (1 + |x|)``."""
    x = b.input(n, 0)
    denominator = b.emit("aten.add.Scalar", b.emit("aten.abs.default", x, tag="abs"), 1.0)
    return b.emit("aten.div.Tensor", x, denominator)


def thresholded_relu(b: GraphBuilder, n: OnnxNode) -> Val:
    """``x`` where ``x > alpha`` (default 1), else 0."""
    x = b.input(n, 0)
    above = b.emit("aten.gt.Scalar", x, attr_float(n, "alpha", 1.0), tag="above")
    return b.emit("aten.where.ScalarOther", above, x, 0.0)


ACTIVATION_CONVERTERS = {
    "LeakyRelu": leaky_relu,
    "Elu": elu,
    "Celu": celu,
    "Selu": selu,
    "PRelu": prelu,
    "Gelu": gelu,
    "Softsign": softsign,
    "ThresholdedRelu": thresholded_relu,
}
