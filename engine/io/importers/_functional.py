"""Ops MPQ writes with others it already has: copy, scatter, diff; views as reshapes.

Functionalising a program (``ExportedProgram.run_decompositions({})``) turns a write
into a view -- ``y[:, :2].add_(1)``, ``z.copy_(y)`` -- into out-of-place ops that
rebuild the whole tensor: ``copy(dst, src)``, ``slice_scatter(base, src, dim, start,
end)``, ``select_scatter(base, src, dim, index)``. MPQ keeps its op set small by
writing them with ops it already imports, runs integer-only and exports:

- ``copy(dst, src) = expand(src.to(dst.dtype), dst.shape)``;
- ``slice_scatter(base, src, d, s, e) = cat([base[s0:s], src, base[e:]], d)`` (step 1);
- ``select_scatter(base, src, d, i) = slice_scatter(base, unsqueeze(src, d), d, i, i+1)``;
- ``diff(x, 1, d, prepend, append) = y[1:] - y[:-1]`` along ``d``, ``y = cat([prepend, x,
  append], d)`` (what ``transformers`` masks use);
- ``view(x, s) = reshape(x, s)``: equal wherever the view is valid, and valid on any
  layout (a view after attention's transpose is valid on the CPU kernel's strides but
  not on the meta device's, where MPQ infers shapes).
"""

from __future__ import annotations

from engine.errors import UnsupportedOpsError
from engine.ir import DType, Node, Ref, Value

__all__ = ["FUNCTIONAL_OPS", "rewrite_functional"]

_COPY = "aten.copy.default"
_SLICE_SCATTER = "aten.slice_scatter.default"
_SELECT_SCATTER = "aten.select_scatter.default"
_DIFF = "aten.diff.default"
_VIEW = "aten.view.default"
FUNCTIONAL_OPS = frozenset({_COPY, _SLICE_SCATTER, _SELECT_SCATTER, _DIFF, _VIEW})
_END = 2**63 - 1


def rewrite_functional(
    node: Node, base_shape: tuple[int, ...], base_dtype: str, src_dtype: str
) -> list[Node]:
    """The IR nodes computing ``node`` (one of :data:`FUNCTIONAL_OPS`); the last is named
    ``node.name``. ``base_shape``/``base_dtype`` describe argument 0, ``src_dtype`` argument 1.

    Raises:
        UnsupportedOpsError: a strided scatter (step != 1).
    """
    if node.op == _VIEW:
        return [Node(node.name, "aten.reshape.default", node.args, node.kwargs)]
    if node.op == _DIFF:
        return _diff(node, base_shape)
    args = list(node.args) + [None] * 6
    base, src = args[0], args[1]
    if not isinstance(base, Ref) or not isinstance(src, Ref):
        raise UnsupportedOpsError(f"{node.name} ({node.op}) needs tensor operands")
    out: list[Node] = []
    if src_dtype != base_dtype:
        cast = Node(
            f"{node.name}_cast", "aten._to_copy.default", (src,), {"dtype": DType(base_dtype)}
        )
        out.append(cast)
        src = Ref(cast.name)
    if node.op == _COPY:
        out.append(Node(node.name, "aten.expand.default", (src, list(base_shape))))
        return out
    dim = _kw(node, args, 2, "dim", 0) or 0
    rank = len(base_shape)
    dim = dim % rank if rank else 0
    size = base_shape[dim]
    if node.op == _SELECT_SCATTER:
        index = (_kw(node, args, 3, "index", 0) or 0) % size
        start, end = index, index + 1
        unsqueeze = Node(f"{node.name}_unsqueeze", "aten.unsqueeze.default", (src, dim))
        out.append(unsqueeze)
        src = Ref(unsqueeze.name)
    else:
        if _kw(node, args, 5, "step", 1) not in (1, None):
            raise UnsupportedOpsError(f"{node.name}: a strided slice_scatter is not supported")
        start = _bound(_kw(node, args, 3, "start", None), 0, size)
        end = _bound(_kw(node, args, 4, "end", None), size, size)
    parts: list[Value] = []
    if start > 0:
        out.append(Node(f"{node.name}_head", "aten.slice.Tensor", (base, dim, 0, start)))
        parts.append(Ref(f"{node.name}_head"))
    parts.append(src)
    if end < size:
        out.append(Node(f"{node.name}_tail", "aten.slice.Tensor", (base, dim, end, _END)))
        parts.append(Ref(f"{node.name}_tail"))
    if len(parts) == 1:
        out.append(Node(node.name, "aten.clone.default", (src,)))
    else:
        out.append(Node(node.name, "aten.cat.default", (parts, dim)))
    return out


def _diff(node: Node, shape: tuple[int, ...]) -> list[Node]:
    args = list(node.args) + [None] * 5
    x, n = args[0], node.kwargs.get("n", args[1] if args[1] is not None else 1)
    dim = node.kwargs.get("dim", args[2] if args[2] is not None else -1)
    prepend = node.kwargs.get("prepend", args[3])
    append = node.kwargs.get("append", args[4])
    if n != 1 or not isinstance(dim, int):
        raise UnsupportedOpsError(f"{node.name}: diff of order {n} is not supported (order 1 is)")
    dim = dim % max(1, len(shape))
    out: list[Node] = []
    parts: list[Value] = [p for p in (prepend, x, append) if p is not None]
    if len(parts) > 1:
        out.append(Node(f"{node.name}_cat", "aten.cat.default", (parts, dim)))
        x = Ref(f"{node.name}_cat")
    out.append(Node(f"{node.name}_hi", "aten.slice.Tensor", (x, dim, 1, _END)))
    out.append(Node(f"{node.name}_lo", "aten.slice.Tensor", (x, dim, 0, -1)))
    hi, lo = Ref(f"{node.name}_hi"), Ref(f"{node.name}_lo")
    out.append(Node(node.name, "aten.sub.Tensor", (hi, lo)))
    return out


def _kw(node: Node, args: list[Value], i: int, name: str, default: int | None) -> int | None:
    v = node.kwargs.get(name, args[i] if args[i] is not None else default)
    return v if isinstance(v, int) else default


def _bound(v: int | None, default: int, size: int) -> int:
    """A slice bound clamped to ``[0, size]`` (negative values count from the end)."""
    if v is None:
        return default
    if v < 0:
        v += size
    return max(0, min(size, v))
