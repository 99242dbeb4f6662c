"""ATen -> ONNX: activations and softmax.

Direct: ``relu``, ``sigmoid``, ``tanh``, ``hardswish``, ``mish`` (``x tanh(softplus(x))``),
``selu`` (torch's alpha and scale are ONNX's defaults), ``gelu(approximate)`` ->
``Gelu``; ``hardsigmoid = HardSigmoid(alpha=1/6, beta=1/2)``; ``leaky_relu(x, s) =
LeakyRelu(alpha=s)``; ``softmax`` / ``log_softmax(x, dim)`` -> ``Softmax`` /
``LogSoftmax(axis=dim)``. Composed:

- ``silu(x) = x * Sigmoid(x)``;
- ``hardtanh(x, lo, hi) = Clip(x, lo, hi)``, ``relu6(x) = Clip(x, 0, 6)``;
- ``elu(x, alpha, scale, input_scale)``: ``Elu(alpha)`` when both scales are 1, else
  ``Where(x > 0, scale x, scale alpha (Exp(input_scale x) - 1))``;
- ``softplus(x, beta, threshold) = Where(beta x > threshold, x, Softplus(beta x) / beta)``;
- ``prelu(x, w) = PRelu(x, w)`` with ``w`` (one slope per channel, axis 1) reshaped to
  ``[C, 1, ..., 1]``: ONNX broadcasts the slope from the last axis.
"""

from __future__ import annotations

from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, pos, unary
from engine.ir import Node

__all__ = ["ACTIVATION_OPS"]


def _silu(b: GraphBuilder, n: Node) -> None:
    x = b.value(pos(n)[0])
    b.add("Mul", [x, b.add("Sigmoid", [x], hint=n.name)], out=n.name)


def _gelu(b: GraphBuilder, n: Node) -> None:
    b.add("Gelu", [b.value(pos(n)[0])], out=n.name, approximate=arg(n, 1, "approximate", "none"))


def _clip(b: GraphBuilder, n: Node, lo: float, hi: float) -> None:
    dtype = b.meta[n.name].dtype
    b.add("Clip", [b.value(pos(n)[0]), b.scalar(lo, dtype), b.scalar(hi, dtype)], out=n.name)


def _hardtanh(b: GraphBuilder, n: Node) -> None:
    _clip(b, n, arg(n, 1, "min_val", -1.0), arg(n, 2, "max_val", 1.0))


def _relu6(b: GraphBuilder, n: Node) -> None:
    _clip(b, n, 0.0, 6.0)


def _leaky_relu(b: GraphBuilder, n: Node) -> None:
    slope = float(arg(n, 1, "negative_slope", 0.01))
    b.add("LeakyRelu", [b.value(pos(n)[0])], out=n.name, alpha=slope)


def _elu(b: GraphBuilder, n: Node) -> None:
    dtype = b.meta[n.name].dtype
    x = b.value(pos(n)[0])
    alpha = float(arg(n, 1, "alpha", 1.0))
    scale, input_scale = float(arg(n, 2, "scale", 1.0)), float(arg(n, 3, "input_scale", 1.0))
    if scale == 1 and input_scale == 1:
        b.add("Elu", [x], out=n.name, alpha=alpha)
        return
    h = n.name
    grown = b.add("Exp", [b.add("Mul", [x, b.scalar(input_scale, dtype)], hint=h)], hint=h)
    negative = b.add("Sub", [grown, b.scalar(1.0, dtype)], hint=h)
    negative = b.add("Mul", [negative, b.scalar(scale * alpha, dtype)], hint=h)
    positive = b.add("Mul", [x, b.scalar(scale, dtype)], hint=h)
    above = b.add("Greater", [x, b.scalar(0.0, dtype)], hint=h)
    b.add("Where", [above, positive, negative], out=n.name)


def _softplus(b: GraphBuilder, n: Node) -> None:
    dtype = b.meta[n.name].dtype
    x = b.value(pos(n)[0])
    beta, threshold = arg(n, 1, "beta", 1.0), arg(n, 2, "threshold", 20.0)
    scaled = b.add("Mul", [x, b.scalar(beta, dtype)], hint=n.name) if beta != 1 else x
    soft = b.add("Softplus", [scaled], hint=n.name)
    if beta != 1:
        soft = b.add("Div", [soft, b.scalar(beta, dtype)], hint=n.name)
    linear = b.add("Greater", [scaled, b.scalar(threshold, dtype)], hint=n.name)
    b.add("Where", [linear, x, soft], out=n.name)


def _prelu(b: GraphBuilder, n: Node) -> None:
    x, w = pos(n)[0], pos(n)[1]
    rank, slopes = len(b.meta[x.name].shape), b.value(w)
    channels = b.meta[w.name].shape
    if rank > 2 and channels != (1,):
        slopes = b.add("Reshape", [slopes, b.ints([-1] + [1] * (rank - 2))], hint=n.name)
    b.add("PRelu", [b.value(x), slopes], out=n.name)


def _softmax(op_type: str) -> Converter:
    def convert(b: GraphBuilder, n: Node) -> None:
        b.add(op_type, [b.value(pos(n)[0])], out=n.name, axis=int(pos(n)[1]))

    return convert


_A = "aten."
ACTIVATION_OPS: dict[str, Converter] = {
    **{
        _A + f"{op}.default": unary(t)
        for op, t in [
            ("relu", "Relu"),
            ("sigmoid", "Sigmoid"),
            ("tanh", "Tanh"),
            ("hardswish", "HardSwish"),
            ("mish", "Mish"),
            ("selu", "Selu"),
        ]
    },
    _A + "hardsigmoid.default": unary("HardSigmoid", alpha=1 / 6, beta=0.5),
    _A + "silu.default": _silu,
    _A + "gelu.default": _gelu,
    _A + "hardtanh.default": _hardtanh,
    _A + "relu6.default": _relu6,
    _A + "leaky_relu.default": _leaky_relu,
    _A + "elu.default": _elu,
    _A + "softplus.default": _softplus,
    _A + "prelu.default": _prelu,
    _A + "softmax.int": _softmax("Softmax"),
    _A + "_softmax.default": _softmax("Softmax"),
    _A + "log_softmax.int": _softmax("LogSoftmax"),
    _A + "_log_softmax.default": _softmax("LogSoftmax"),
}
