"""ATen -> ONNX: rounding division and remainder, as torch's CPU kernels compute them.

Both operands are first cast to the output dtype. On integers (``Div`` truncates
toward zero, ``Mod(fmod=0)`` takes the divisor's sign, as Python's ``%``):

- ``div(a, b, rounding_mode="trunc") = Div(a, b)``;
- ``div(a, b, rounding_mode="floor") = floor_divide(a, b) = Div(a - Mod(a, b), b)``
  (exact: ``a - Mod(a, b)`` is a multiple of ``b``);
- ``remainder(a, b) = Mod(a, b)``;
- ``fmod(a, b) = Mod(a, b, fmod=1)`` (the dividend's sign, as C), integers and floats.

On floats, with ``m = Mod(a, b, fmod=1)`` (C's ``fmod``: the dividend's sign) and
``wrong = m != 0 and (b < 0) != (m < 0)`` (``m`` has the other sign than ``b``):

- ``trunc``: ``q = a / b``, ``Where(q < 0, Ceil(q), Floor(q))``;
- ``floor`` (``c10::div_floor_floating``): ``d = (a - m) / b - wrong``,
  ``f = Floor(d) + (d - Floor(d) > 0.5)``, and ``a / b`` where ``b == 0``;
- ``remainder = m + wrong * b``.
"""

from __future__ import annotations

import torch

from engine.errors import UnsupportedExportError
from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, operand, pos
from engine.io.export._tensors import onnx_dtype
from engine.ir import Node

__all__ = ["ROUNDING_OPS"]


def _operands(b: GraphBuilder, n: Node) -> tuple[str, str, torch.dtype]:
    dtype = b.meta[n.name].dtype
    return operand(b, pos(n)[0], dtype), operand(b, pos(n)[1], dtype), dtype


def _wrong_sign(b: GraphBuilder, m: str, d: str, dtype: torch.dtype, hint: str) -> str:
    """Bool ``m != 0 and (d < 0) != (m < 0)``: a C remainder ``m`` whose sign is not ``d``'s."""
    zero = b.scalar(0, dtype)
    nonzero = b.add("Not", [b.add("Equal", [m, zero], hint=hint)], hint=hint)
    signs = [b.add("Less", [d, zero], hint=hint), b.add("Less", [m, zero], hint=hint)]
    return b.add("And", [nonzero, b.add("Xor", signs, hint=hint)], hint=hint)


def _trunc(b: GraphBuilder, n: Node) -> None:
    a, d, dtype = _operands(b, n)
    q = b.add("Div", [a, d], out=None if dtype.is_floating_point else n.name, hint=n.name)
    if dtype.is_floating_point:
        negative = b.add("Less", [q, b.scalar(0, dtype)], hint=n.name)
        rounded = [b.add("Ceil", [q], hint=n.name), b.add("Floor", [q], hint=n.name)]
        b.add("Where", [negative, *rounded], out=n.name)


def _floor(b: GraphBuilder, n: Node) -> None:
    a, d, dtype = _operands(b, n)
    if not dtype.is_floating_point:
        multiple = b.add("Sub", [a, b.add("Mod", [a, d], hint=n.name, fmod=0)], hint=n.name)
        b.add("Div", [multiple, d], out=n.name)
        return
    h = n.name
    m = b.add("Mod", [a, d], hint=h, fmod=1)
    q = b.add("Div", [b.add("Sub", [a, m], hint=h), d], hint=h)
    wrong = b.add("Cast", [_wrong_sign(b, m, d, dtype, h)], hint=h, to=onnx_dtype(dtype))
    q = b.add("Sub", [q, wrong], hint=h)
    floor = b.add("Floor", [q], hint=h)
    up = b.add("Greater", [b.add("Sub", [q, floor], hint=h), b.scalar(0.5, dtype)], hint=h)
    floor = b.add("Add", [floor, b.add("Cast", [up], hint=h, to=onnx_dtype(dtype))], hint=h)
    by_zero = b.add("Equal", [d, b.scalar(0, dtype)], hint=h)
    b.add("Where", [by_zero, b.add("Div", [a, d], hint=h), floor], out=n.name)


def _div_mode(b: GraphBuilder, n: Node) -> None:
    mode = arg(n, 2, "rounding_mode")
    if mode is None:
        a, d, _ = _operands(b, n)
        b.add("Div", [a, d], out=n.name)
    elif mode == "trunc":
        _trunc(b, n)
    elif mode == "floor":
        _floor(b, n)
    else:
        raise UnsupportedExportError(f"{n.name}: div rounding_mode {mode!r} is not exported")


def _remainder(b: GraphBuilder, n: Node) -> None:
    a, d, dtype = _operands(b, n)
    if not dtype.is_floating_point:
        b.add("Mod", [a, d], out=n.name, fmod=0)
        return
    m = b.add("Mod", [a, d], hint=n.name, fmod=1)
    wrong = _wrong_sign(b, m, d, dtype, n.name)
    b.add("Where", [wrong, b.add("Add", [m, d], hint=n.name), m], out=n.name)


def _fmod(b: GraphBuilder, n: Node) -> None:
    a, d, _ = _operands(b, n)
    b.add("Mod", [a, d], out=n.name, fmod=1)


_A = "aten."
ROUNDING_OPS: dict[str, Converter] = {
    _A + "div.Tensor_mode": _div_mode,
    _A + "floor_divide.default": _floor,
    _A + "remainder.Tensor": _remainder,
    _A + "remainder.Scalar": _remainder,
    _A + "fmod.Tensor": _fmod,
    _A + "fmod.Scalar": _fmod,
}
