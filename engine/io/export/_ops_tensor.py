"""ATen -> ONNX: elementwise arithmetic and math, shapes, data movement.

Each converter emits the ONNX nodes computing one IR node, whose output keeps
the IR node's name. Semantics follow torch: a Python scalar operand takes the
result's dtype (``int64_tensor * 0.5`` is float32), so every operand is cast to
the output dtype first; shape ops (view, reshape, flatten, squeeze, unsqueeze,
unflatten) are one ``Reshape`` to the node's static output shape; dtype moves
(``to``, ``_to_copy``, ``type_as``) are one ``Cast``; ``rsqrt(x) =
Reciprocal(Sqrt(x))``; ``floor`` / ``ceil`` / ``round`` are ``Floor`` / ``Ceil`` /
``Round`` (half to even in both) on floats and ``Identity`` on integers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from engine.errors import UnsupportedExportError
from engine.io.export._builder import GraphBuilder
from engine.io.export._tensors import onnx_dtype
from engine.ir import Node, Ref

__all__ = ["TENSOR_OPS", "Converter", "arg", "int_list", "operand", "pos", "unary"]

Converter = Callable[[GraphBuilder, Node], None]
INT64_MAX = 2**63 - 1


def arg(n: Node, i: int, name: str, default: Any = None) -> Any:
    """Positional argument ``i`` of ``n``, else keyword ``name``, else ``default``."""
    return pos(n)[i] if len(n.args) > i else n.kwargs.get(name, default)


def pos(n: Node) -> tuple[Any, ...]:
    """The positional arguments of ``n``, untyped (converters check what they use)."""
    return tuple(n.args)


def int_list(v: object, n: int) -> list[int]:
    """An int-or-list argument (``stride=2``, ``[2]``, ``[2, 1]``) as a list of ``n`` ints."""
    if isinstance(v, int):
        return [v] * n
    assert isinstance(v, list)
    out = [int(x) for x in v]
    return out * n if len(out) == 1 else out


def operand(b: GraphBuilder, v: Any, dtype: torch.dtype) -> str:
    """A tensor operand cast to ``dtype`` if needed, or a Python scalar as a constant."""
    if isinstance(v, Ref):
        name = b.value(v)
        if b.meta[v.name].dtype != dtype:
            name = b.add("Cast", [name], hint=v.name, to=onnx_dtype(dtype))
        return name
    return b.scalar(v, dtype)


def _out(b: GraphBuilder, n: Node) -> tuple[tuple[int, ...], torch.dtype]:
    m = b.meta[n.name]
    return m.shape, m.dtype


def unary(op_type: str, **attrs: Any) -> Converter:
    """``op_type(x, **attrs)`` of the first argument."""

    def convert(b: GraphBuilder, n: Node) -> None:
        b.add(op_type, [b.value(pos(n)[0])], out=n.name, **attrs)

    return convert


def _binary(op_type: str, *, reverse: bool = False) -> Converter:
    """``x op (alpha * y)`` (``alpha`` for add/sub); ``reverse``: ``(alpha * y) op x`` (rsub)."""

    def convert(b: GraphBuilder, n: Node) -> None:
        _, dtype = _out(b, n)
        x, y = operand(b, pos(n)[0], dtype), operand(b, pos(n)[1], dtype)
        alpha = arg(n, 2, "alpha", 1)
        if alpha != 1:
            y = b.add("Mul", [y, b.scalar(alpha, dtype)], hint=n.name)
        b.add(op_type, [y, x] if reverse else [x, y], out=n.name)

    return convert


def _rsqrt(b: GraphBuilder, n: Node) -> None:
    b.add("Reciprocal", [b.add("Sqrt", [b.value(pos(n)[0])], hint=n.name)], out=n.name)


def _rounding(op_type: str) -> Converter:
    """Floor / Ceil / Round (half to even, as torch) of floats; integers are already whole."""

    def convert(b: GraphBuilder, n: Node) -> None:
        x = pos(n)[0]
        whole = not b.meta[x.name].dtype.is_floating_point
        b.add("Identity" if whole else op_type, [b.value(x)], out=n.name)

    return convert


def _clip(lo: tuple[int, str] | None, hi: tuple[int, str] | None) -> Converter:
    """``Clip(x, min, max)`` with bounds from (position, keyword) arguments; None: absent."""

    def convert(b: GraphBuilder, n: Node) -> None:
        _, dtype = _out(b, n)
        bounds = []
        for where in (lo, hi):
            v = arg(n, *where) if where is not None else None
            bounds.append("" if v is None else operand(b, v, dtype))
        b.add("Clip", [b.value(pos(n)[0]), *bounds], out=n.name)

    return convert


def _reshape(b: GraphBuilder, n: Node) -> None:
    shape, _ = _out(b, n)
    b.add("Reshape", [b.value(pos(n)[0]), b.ints(shape)], out=n.name)


def _expand(b: GraphBuilder, n: Node) -> None:
    shape, _ = _out(b, n)
    b.add("Expand", [b.value(pos(n)[0]), b.ints(shape)], out=n.name)


def _permute(b: GraphBuilder, n: Node) -> None:
    rank = len(b.meta[n.name].shape)
    b.add("Transpose", [b.value(pos(n)[0])], out=n.name, perm=[d % rank for d in pos(n)[1]])


def _transpose(b: GraphBuilder, n: Node) -> None:
    rank = len(b.meta[n.name].shape)
    perm = list(range(rank))
    if n.op != "aten.t.default":
        i, j = int(pos(n)[1]) % rank, int(pos(n)[2]) % rank
        perm[i], perm[j] = perm[j], perm[i]
    else:
        perm.reverse()
    b.add("Transpose", [b.value(pos(n)[0])], out=n.name, perm=perm)


def _identity(b: GraphBuilder, n: Node) -> None:
    if n.op == "aten.dropout.default" and arg(n, 2, "train", False):
        raise UnsupportedExportError(f"{n.name}: dropout in training mode is not exported")
    b.add("Identity", [b.value(pos(n)[0])], out=n.name)


def _cast(b: GraphBuilder, n: Node) -> None:
    _, dtype = _out(b, n)
    b.add("Cast", [b.value(pos(n)[0])], out=n.name, to=onnx_dtype(dtype))


def _cat(b: GraphBuilder, n: Node) -> None:
    _, dtype = _out(b, n)
    rank = len(b.meta[n.name].shape)
    parts = [operand(b, v, dtype) for v in pos(n)[0]]
    b.add("Concat", parts, out=n.name, axis=int(arg(n, 1, "dim", 0)) % rank)


def _slice(b: GraphBuilder, n: Node) -> None:
    start, end = arg(n, 2, "start"), arg(n, 3, "end")
    start = 0 if start is None else start
    end = INT64_MAX if end is None else min(end, INT64_MAX)
    axes, step = [int(arg(n, 1, "dim", 0))], [int(arg(n, 4, "step", 1))]
    inputs = [b.value(pos(n)[0]), b.ints([start]), b.ints([end]), b.ints(axes), b.ints(step)]
    b.add("Slice", inputs, out=n.name)


def _select(b: GraphBuilder, n: Node) -> None:
    index = b.scalar(int(pos(n)[2]), torch.int64)  # a 0-d index drops the axis
    b.add("Gather", [b.value(pos(n)[0]), index], out=n.name, axis=int(pos(n)[1]))


def _index_select(b: GraphBuilder, n: Node) -> None:
    b.add("Gather", [b.value(pos(n)[0]), b.value(pos(n)[2])], out=n.name, axis=int(pos(n)[1]))


_A = "aten."
TENSOR_OPS: dict[str, Converter] = {
    **{_A + f"{op}.Tensor": _binary(t) for op, t in [("add", "Add"), ("sub", "Sub")]},
    **{_A + f"{op}.Scalar": _binary(t) for op, t in [("add", "Add"), ("sub", "Sub")]},
    **{_A + f"mul.{k}": _binary("Mul") for k in ("Tensor", "Scalar")},
    **{_A + f"div.{k}": _binary("Div") for k in ("Tensor", "Scalar")},
    _A + "rsub.Scalar": _binary("Sub", reverse=True),
    _A + "rsub.Tensor": _binary("Sub", reverse=True),
    _A + "pow.Tensor_Scalar": _binary("Pow"),
    _A + "pow.Tensor_Tensor": _binary("Pow"),
    **{
        _A + f"{op}.default": unary(t)
        for op, t in [
            ("erf", "Erf"),
            ("exp", "Exp"),
            ("log", "Log"),
            ("sqrt", "Sqrt"),
            ("abs", "Abs"),
            ("neg", "Neg"),
            ("reciprocal", "Reciprocal"),
            ("cos", "Cos"),
            ("sin", "Sin"),
            ("sign", "Sign"),
        ]
    },
    **{
        _A + f"{op}.default": _rounding(t)
        for op, t in [("floor", "Floor"), ("ceil", "Ceil"), ("round", "Round")]
    },
    _A + "rsqrt.default": _rsqrt,
    _A + "clamp.default": _clip((1, "min"), (2, "max")),
    _A + "clamp_min.default": _clip((1, "min"), None),
    _A + "clamp_max.default": _clip(None, (1, "max")),
    **{
        _A + op: _reshape
        for op in (
            "view.default",
            "reshape.default",
            "_unsafe_view.default",
            "flatten.using_ints",
            "unflatten.int",
            "unsqueeze.default",
            "squeeze.dim",
            "squeeze.dims",
            "squeeze.default",
        )
    },
    _A + "expand.default": _expand,
    _A + "expand_as.default": _expand,
    _A + "permute.default": _permute,
    _A + "transpose.int": _transpose,
    _A + "t.default": _transpose,
    **{
        _A + op: _identity
        for op in (
            "contiguous.default",
            "clone.default",
            "alias.default",
            "detach.default",
            "lift_fresh_copy.default",
            "dropout.default",
        )
    },
    **{
        _A + op: _cast
        for op in (
            "to.dtype",
            "to.dtype_layout",
            "to.device",
            "_to_copy.default",
            "type_as.default",
        )
    },
    _A + "cat.default": _cat,
    _A + "slice.Tensor": _slice,
    _A + "select.int": _select,
    _A + "index_select.default": _index_select,
}
