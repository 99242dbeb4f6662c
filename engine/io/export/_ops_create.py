"""ATen -> ONNX: tensor factories (zeros, ones, full, arange and their ``_like`` / ``new_`` forms).

The IR has static shapes and a factory's arguments are data, so its value is
known at export: the converter computes it with torch (the ``_like`` / ``new_``
forms read only the shape and dtype of their tensor operand, so a zero tensor
of that shape stands in for it). A value whose elements are all equal
(``zeros``, ``ones``, ``full``) is written as ``Expand(scalar, shape)`` -- a
few bytes whatever its size; any other (``arange``) as a constant initializer.

In a model that runs at any batch (:attr:`GraphBuilder.any_batch`) an ``arange``
with integer bounds is ``Range(start, end, step)`` of int64 scalars instead (then
``Cast`` to its dtype): the same values -- ``ceil((end - start) / step)`` of them,
each the integer ``start + i·step`` rounded once to the dtype, as torch computes
them -- from an ``end`` the batch can move (``arange(batch)``, the sample indices
masks use).
"""

from __future__ import annotations

import torch

from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter
from engine.io.export._tensors import onnx_dtype
from engine.ir import Node, bind, resolve

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


_ARANGE_BOUNDS = {
    "aten.arange.default": ("end",),
    "aten.arange.start": ("start", "end"),
    "aten.arange.start_step": ("start", "end", "step"),
}

_DEFAULTS = (("start", 0), ("end", None), ("step", 1))


def _range(b: GraphBuilder, n: Node) -> bool:
    """Write an integer ``arange`` as ``Range`` (see the module docstring); False: not one."""
    names = _ARANGE_BOUNDS.get(n.op)
    if names is None:
        return False
    given = {k: n.args[i] if len(n.args) > i else n.kwargs.get(k) for i, k in enumerate(names)}
    bounds = [given.get(k) if given.get(k) is not None else d for k, d in _DEFAULTS]
    ints = [v for v in bounds if type(v) is int]
    if len(ints) != len(bounds):  # float bounds (or bools): a constant
        return False
    limits = [b.scalar(v, torch.int64) for v in ints]
    dtype = b.meta[n.name].dtype
    if dtype == torch.int64:
        b.add("Range", limits, out=n.name)
    else:
        ramp = b.add("Range", limits, hint=n.name)
        b.add("Cast", [ramp], out=n.name, to=onnx_dtype(dtype))
    return True


def _factory(b: GraphBuilder, n: Node) -> None:
    if b.any_batch and _range(b, n):
        return
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
