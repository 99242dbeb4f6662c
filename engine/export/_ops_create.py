"""ATen -> ONNX: tensor factories (zeros, ones, full, arange and their ``_like`` / ``new_`` forms).

The IR has static shapes and a factory's arguments are data, so its value is
known at export: the converter computes it with torch (the ``_like`` / ``new_``
forms read only the shape and dtype of their tensor operand, so a zero tensor
of that shape stands in for it). A value whose elements are all equal
(``zeros``, ``ones``, ``full``) is written as ``Expand(scalar, shape)`` -- a
few bytes whatever its size; any other (``arange``) as a constant initializer.
"""

from __future__ import annotations

import torch

from engine.export._builder import GraphBuilder
from engine.export._ops_tensor import Converter
from engine.fx import bind
from engine.ir import Node
from engine.ops import resolve

__all__ = ["CREATE_OPS"]


def _value(b: GraphBuilder, n: Node) -> torch.Tensor:
    """The factory's output, computed with torch; tensor operands as zeros of their shape."""
    env: dict[str, torch.Tensor] = {}
    for name in n.refs():
        m = b.meta[name]
        env[name] = torch.zeros(m.shape, dtype=m.dtype)
    args = [bind(a, env) for a in n.args]
    kwargs = {k: bind(v, env) for k, v in n.kwargs.items()}
    out = resolve(n.op)(*args, **kwargs)
    assert isinstance(out, torch.Tensor), f"{n.op} is a factory"
    return out


def _factory(b: GraphBuilder, n: Node) -> None:
    t = _value(b, n)
    flat = t.reshape(-1)
    if flat.numel() and bool((flat == flat[0]).all()):
        fill = b.constant(flat[0].clone(), f"{n.name}/fill")
        b.add("Expand", [fill, b.ints(t.shape)], out=n.name)
    else:
        b.add("Identity", [b.constant(t, f"{n.name}/value")], out=n.name)


_A = "aten."
CREATE_OPS: dict[str, Converter] = {
    _A + op: _factory
    for op in (
        "zeros.default",
        "ones.default",
        "full.default",
        "arange.default",
        "arange.start",
        "arange.start_step",
        "zeros_like.default",
        "ones_like.default",
        "full_like.default",
        "new_ones.default",
        "new_zeros.default",
    )
}
