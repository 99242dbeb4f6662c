"""The two-batch trace behind :func:`engine.ir.generalize_batch`.

:func:`trace_batch` runs an IR's nodes on the meta device at the batches 11 and 13
in lockstep and rewrites the literals that carry the batch as it goes (the rules
are in :mod:`engine.ir._batch`); any op that cannot follow, or that selects within
the batch, raises :class:`NotGeneric`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from engine.ir._fx import bind
from engine.ir._model import IRModel
from engine.ir._ops import resolve
from engine.ir._values import BatchSite, DType, Node, Ref, Value

__all__ = ["NotGeneric", "trace_batch"]

_INT64_MAX = 2**63 - 1
_RESHAPES = {"aten.view.default", "aten.reshape.default", "aten._unsafe_view.default"}
_FACTORIES = {"aten.zeros.default", "aten.ones.default", "aten.full.default"}
_NEW_FACTORIES = {"aten.new_ones.default", "aten.new_zeros.default", "aten.new_full.default"}
_ARANGES = {"aten.arange.default", "aten.arange.start", "aten.arange.start_step"}
_BATCH_LOCAL = {
    "aten.select.int",
    "aten.split.Tensor",
    "aten.split_with_sizes.default",
    "aten.index_select.default",
    "aten.gather.default",
}
"""Ops that would pick samples out of the batch when applied along it."""


class NotGeneric(Exception):
    """The graph cannot be run at another batch (the message says why)."""


def trace_batch(
    model: IRModel, size: int, batched: set[str], *, aranges: bool = False
) -> tuple[tuple[Node, ...], list[BatchSite], list[int]]:
    tracer = _Tracer(size, aranges=aranges)
    runs: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    try:
        with torch.no_grad():
            for values, n in zip(runs, _TRIALS, strict=True):
                for spec in model.inputs:
                    shape = (n, *spec.shape[1:]) if spec.name in batched else spec.shape
                    values[spec.name] = torch.empty(
                        shape, dtype=DType(spec.dtype).torch, device="meta"
                    )
                for name, t in model.tensors.items():
                    values[name] = t.to("meta")
            nodes = tuple(tracer.run(n, runs) for n in model.nodes)
    except NotGeneric:
        raise
    except Exception as exc:  # any op that cannot run at another batch
        raise NotGeneric(f"{type(exc).__name__}: {exc}") from None
    outputs: list[int] = []
    for ref in model.outputs:
        a, b = runs[0][ref.name], runs[1][ref.name]
        dim0 = _Dim(a.shape[0], b.shape[0]) if isinstance(a, torch.Tensor) and a.dim() else None
        outputs.append(tracer.coeff(dim0) or 0)
    if not any(outputs):
        raise NotGeneric("no output follows the batch")
    return nodes, tracer.sites, outputs


_TRIALS = (11, 13)
"""The two batches the graph runs at in lockstep (meta tensors): never 0 or 1, rarely a
model dimension, and both different from any stored batch that matters here."""


class _Dim(tuple[int, int]):
    """A dimension's size in the two runs: equal for a fixed dim, ``m·11, m·13`` for the batch."""

    def __new__(cls, a: Any, b: Any) -> _Dim:
        return super().__new__(cls, (int(a), int(b)))


def _dims(a: Any, b: Any) -> list[_Dim]:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.dim() != b.dim():
        return []
    return [_Dim(x, y) for x, y in zip(a.shape, b.shape, strict=True)]


class _Tracer:
    """Runs IR nodes at two batches at once, rewriting batch literals (module docstring)."""

    def __init__(self, size: int, *, aranges: bool = False) -> None:
        self.size, self.aranges = size, aranges
        self.sites: list[BatchSite] = []

    def coeff(self, d: _Dim | None) -> int | None:
        """``m`` when ``d`` is ``m`` times the batch in both runs; None for a fixed dim."""
        if d is None or d[0] == d[1]:
            return None
        m = d[0] // _TRIALS[0]
        if m < 1 or d != (m * _TRIALS[0], m * _TRIALS[1]):
            raise NotGeneric(f"a dimension {d} is not a multiple of the batch")
        return m

    def run(self, node: Node, runs: tuple[dict[str, Any], dict[str, Any]]) -> Node:
        """Rewrite ``node``'s batch literals, run it at both batches, return the IR node."""
        first = len(self.sites)
        node = self._rewrite(node, runs)
        for values, n in zip(runs, _TRIALS, strict=True):
            traced = node
            for site in self.sites[first:]:
                traced = traced.with_arg(site.path, site.coeff * n)
            args = [_on_meta(bind(a, values)) for a in traced.args]
            kwargs = {k: _on_meta(bind(v, values)) for k, v in traced.kwargs.items()}
            values[node.name] = resolve(node.op)(*args, **kwargs)
        return node

    def _rewrite(self, node: Node, runs: tuple[dict[str, Any], dict[str, Any]]) -> Node:
        op, args = node.op, node.args
        first = args[0].name if args and isinstance(args[0], Ref) else None
        shape = _dims(runs[0].get(first), runs[1].get(first)) if first else []
        batch_dims = [i for i, d in enumerate(shape) if self.coeff(d)]
        if op in _BATCH_LOCAL and batch_dims:
            split = op.startswith("aten.split")
            dim = _int_arg(node, 2 if split else 1, "dim", 0)
            if dim % len(shape) in batch_dims:
                raise NotGeneric(f"{node.name} ({op}) picks samples out of the batch")
        if op == "aten.index.Tensor" and batch_dims and 0 in batch_dims:
            index = args[1][0] if isinstance(args[1], list) and args[1] else None
            if isinstance(index, Ref):
                pair = _dims(runs[0].get(index.name), runs[1].get(index.name))
                if not any(self.coeff(d) for d in pair):
                    raise NotGeneric(f"{node.name} indexes the batch with fixed indices")
        if op in _RESHAPES and batch_dims and isinstance(args[1], list):
            return node.with_arg((1,), self._reshape(node, shape, batch_dims, args[1]))
        if op == "aten.expand.default" and isinstance(args[1], list):
            return node.with_arg((1,), self._expand(node, shape, args[1]))
        if op == "aten.slice.Tensor" and batch_dims:
            return self._slice(node, shape, batch_dims)
        if op in _FACTORIES and args and isinstance(args[0], list):
            self._leading(node, (0, 0), args[0])
        elif op in _NEW_FACTORIES and len(args) > 1 and isinstance(args[1], list):
            self._leading(node, (1, 0), args[1])
        elif op in _ARANGES and self.aranges and self.size > 1:
            end = 0 if op == "aten.arange.default" else 1
            starts_at_0 = op == "aten.arange.default" or args[0] == 0
            step_1 = op != "aten.arange.start_step" or len(args) < 3 or args[2] == 1
            if starts_at_0 and step_1 and len(args) > end and args[end] == self.size:
                self.sites.append(BatchSite(node.name, (end,), 1))
        return node

    def _reshape(
        self, node: Node, shape: list[_Dim], batch_dims: list[int], target: list[Value]
    ) -> list[Value]:
        if len(batch_dims) != 1 or not all(isinstance(t, int) for t in target):
            raise NotGeneric(f"{node.name}: cannot place the batch in {target}")
        p = batch_dims[0]
        m_in = self.coeff(shape[p]) or 0
        prefix = math.prod(d[0] for d in shape[:p])
        numel = prefix * m_in * self.size * math.prod(d[0] for d in shape[p + 1 :])
        ints = [t for t in target if isinstance(t, int)]
        known = math.prod(t for t in ints if t != -1)
        resolved = [numel // known if t == -1 else t for t in ints] if known else ints
        q = _batch_position(resolved, prefix, self.size)
        if q is None:
            raise NotGeneric(f"{node.name}: cannot place the batch in {target}")
        if ints[q] != -1:
            self.sites.append(BatchSite(node.name, (1, q), resolved[q] // self.size))
        return list(target)

    def _expand(self, node: Node, shape: list[_Dim], sizes: list[Value]) -> list[Value]:
        out = list(sizes)
        lead = len(sizes) - len(shape)
        for i, s in enumerate(sizes):
            d = shape[i - lead] if i >= lead else None
            if d is not None and self.coeff(d):
                out[i] = -1
            elif (
                i == 0
                and isinstance(s, int)
                and self.size > 1
                and s % self.size == 0
                and (d is None or d == (1, 1))
            ):
                self.sites.append(BatchSite(node.name, (1, 0), s // self.size))
        return out

    def _slice(self, node: Node, shape: list[_Dim], batch_dims: list[int]) -> Node:
        dim = _int_arg(node, 1, "dim", 0) % len(shape)
        if dim not in batch_dims:
            return node
        start = node.args[2] if len(node.args) > 2 else node.kwargs.get("start", 0)
        in_kwargs = len(node.args) <= 3
        end = node.kwargs.get("end") if in_kwargs else node.args[3]
        step = node.args[4] if len(node.args) > 4 else node.kwargs.get("step", 1)
        stored = (self.coeff(shape[dim]) or 0) * self.size
        whole = end is None or (isinstance(end, int) and end >= stored)
        if start not in (0, None) or step not in (1, None) or not whole:
            raise NotGeneric(f"{node.name} slices within the batch")
        if end is None or end == _INT64_MAX:
            return node
        return node.with_arg(("end",) if in_kwargs else (3,), _INT64_MAX)

    def _leading(self, node: Node, path: tuple[int, ...], sizes: list[Value]) -> None:
        first = sizes[0] if sizes else None
        if isinstance(first, int) and self.size > 1 and first > 0 and first % self.size == 0:
            self.sites.append(BatchSite(node.name, path, first // self.size))


def _batch_position(target: Sequence[int], prefix: int, size: int) -> int | None:
    """The target dim that carries the batch (module docstring), or None."""
    products = [math.prod(target[:j]) for j in range(len(target))]
    for j, t in enumerate(target):
        if products[j] == prefix and t % size == 0 and t > 0:
            return j
    merged = [
        j
        for j, t in enumerate(target)
        if products[j] and prefix % products[j] == 0 and t % (size * (prefix // products[j])) == 0
    ]
    return merged[-1] if merged else None


def _on_meta(v: Any) -> Any:
    """``v`` with devices replaced by ``meta`` (factories and ``to`` stay off the CPU)."""
    if isinstance(v, torch.device):
        return torch.device("meta")
    if isinstance(v, list):
        return [_on_meta(x) for x in v]
    return v


def _int_arg(node: Node, index: int, name: str, default: int) -> int:
    v = node.args[index] if len(node.args) > index else node.kwargs.get(name, default)
    return v if isinstance(v, int) else default
