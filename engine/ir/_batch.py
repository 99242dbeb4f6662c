"""The batch dimension: find which literals of a static graph carry it.

Exported graphs are static: a model exported at batch 32 (or 1, or traced with a
dynamic batch and specialised at import) holds literals such as
``view(x, [32, 12, 64, 64])`` and ``expand(m, [32, 1, 64, 64])``. To run it at
another batch ``n`` those literals must become ``n``-multiples while every
other integer stays. :func:`generalize_batch` finds them by running the graph
on the meta device (shapes only) at two batches at once, 11 and 13, so that a
dimension is the batch's ``m``-multiple exactly when it is ``11m`` in one run and
``13m`` in the other; torch's own shape functions propagate every op, and the
size arguments of the ops that take sizes are rewritten as the runs go:

- ``view`` / ``reshape`` of ``x`` with ``x.shape[p] = m·N``: the target dim ``q``
  whose prefix product equals that of ``x`` before ``p`` (the batch keeps its
  place), else the last dim whose prefix divides it (the batch merged with the
  dims before it); its literal ``t_q`` (a multiple of the stored batch ``B``)
  becomes ``(t_q / B)·N``; a ``-1`` there is left alone;
- ``expand``: a size over a batch dim becomes ``-1``; a new or broadcast
  leading dim equal to ``k·B`` (``B > 1``) becomes ``k·N``;
- ``slice`` over a batch dim to its end: the end becomes ``2^63 - 1``;
- factories (``zeros``, ``ones``, ``full``, ``new_*``) whose first size is
  ``k·B`` (``B > 1``) become ``k·N``;
- when that is not enough, stored ``[B, ...]`` tensors whose rows are all equal (a
  mask or class token the export folded at its batch) become one stored row and an
  ``expand`` to ``[B, ...]`` (:func:`_expand_row_constants`), and the trace is retried;
  then, last, also ``arange(B)`` is taken for the batch's indices (masks index the
  batch with it) -- a guess a model dim equal to ``B`` can fool, which the shapes or
  :func:`engine.data.fit_batch`'s check on the data then catch.

Neither run is at the stored batch ``B``, so a literal left at ``B`` that meets
a batch-sized tensor fails loudly (a shape mismatch); any failure, and any op that
selects or slices within the batch, leaves the model with a fixed batch. The
rewritten graph is identical to the original at batch ``B``. Shapes cannot show
everything (a reduction over the rows of a batch-1 export is shape-correct at any
batch), so :func:`engine.data.fit_batch` also compares outputs on real data before using it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from engine.ir._fx import bind
from engine.ir._model import IRModel
from engine.ir._ops import QUANTIZABLE_OPS, resolve
from engine.ir._values import BatchDim, BatchSite, DType, Node, Ref, Value

__all__ = ["DYNAMIC_BATCH", "generalize_batch"]

DYNAMIC_BATCH = 23
"""The batch importers give a model whose batch is dynamic (a symbol, ``dim_param``),
before :func:`generalize_batch` makes it any batch again: a prime, so that it is
rarely also a model dimension (which would make the literals ambiguous)."""

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


class _NotGeneric(Exception):
    """The graph cannot be run at another batch (the message says why)."""


def generalize_batch(model: IRModel) -> IRModel:
    """``model`` with :attr:`IRModel.batch` set when it can run at any batch.

    Inputs whose dimension 0 equals the first input's are the batched ones. A
    model that already has ``batch``, has no input dimensions, or fails the
    two-batch trace (see the module docstring) is returned unchanged.
    """
    if model.batch is not None or not model.inputs or not model.inputs[0].shape:
        return model
    size = model.inputs[0].shape[0]
    batched = tuple(s.name for s in model.inputs if s.shape and s.shape[0] == size)
    expanded = _expand_row_constants(model, size)
    attempts = [(model, False), (expanded, False), (expanded, True)]
    if expanded is model:
        attempts = [(model, False), (model, True)]
    for candidate, aranges in attempts:  # fewest guesses first
        try:
            nodes, sites, outputs = _trace(candidate, size, set(batched), aranges=aranges)
        except _NotGeneric:
            continue
        if len(outputs) != len(candidate.output_specs):
            outputs = []
        batch = BatchDim(size, batched, tuple(sites), tuple(outputs))
        return replace(candidate, nodes=nodes, batch=batch)
    return model


def _expand_row_constants(model: IRModel, size: int) -> IRModel:
    """Stored ``[B, ...]`` tensors whose ``B`` rows are equal, as ``expand(row, [B, ...])``.

    Exports fold per-sample constants that do not depend on the data (an attention
    mask built without an ``attention_mask`` input, a class token expanded to the
    batch) into stored tensors of the exported batch ``B``. Storing one row and
    expanding it computes the same at batch ``B``, and the expand's size is a literal
    the trace can move. Weights (tensors a quantizable layer reads) are left alone.
    """
    if size < 2:
        return model
    weights = {  # float operands of quantizable layers (not an embedding's int64 indices)
        r
        for n in model.nodes
        if n.op in QUANTIZABLE_OPS
        for r in n.refs()
        if r in model.tensors and model.tensors[r].is_floating_point()
    }
    rows = {
        name: t
        for name, t in model.tensors.items()
        if t.dim() >= 2
        and t.shape[0] == size
        and name not in weights
        and bool(torch.equal(t, t[:1].expand_as(t)))
    }
    if not rows:
        return model
    taken = {n.name for n in model.nodes} | set(model.tensors) | {s.name for s in model.inputs}
    renames: dict[str, str] = {}
    head: list[Node] = []
    for name, t in rows.items():
        node = f"{name}_rows"
        while node in taken:
            node += "_"
        taken.add(node)
        renames[name] = node
        head.append(Node(node, "aten.expand.default", (Ref(name), list(t.shape))))
    body = [_renamed(n, renames) for n in model.nodes]
    tensors = {k: (v[:1].clone() if k in rows else v) for k, v in model.tensors.items()}
    outputs = tuple(Ref(renames.get(r.name, r.name)) for r in model.outputs)
    return replace(model, nodes=(*head, *body), tensors=tensors, outputs=outputs)


def _renamed(node: Node, renames: dict[str, str]) -> Node:
    def swap(v: Value) -> Value:
        if isinstance(v, Ref):
            return Ref(renames.get(v.name, v.name))
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    return replace(
        node,
        args=tuple(swap(a) for a in node.args),
        kwargs={k: swap(v) for k, v in node.kwargs.items()},
    )


def _trace(
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
    except _NotGeneric:
        raise
    except Exception as exc:  # any op that cannot run at another batch
        raise _NotGeneric(f"{type(exc).__name__}: {exc}") from None
    outputs: list[int] = []
    for ref in model.outputs:
        a, b = runs[0][ref.name], runs[1][ref.name]
        dim0 = _Dim(a.shape[0], b.shape[0]) if isinstance(a, torch.Tensor) and a.dim() else None
        outputs.append(tracer.coeff(dim0) or 0)
    if not any(outputs):
        raise _NotGeneric("no output follows the batch")
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
            raise _NotGeneric(f"a dimension {d} is not a multiple of the batch")
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
                raise _NotGeneric(f"{node.name} ({op}) picks samples out of the batch")
        if op == "aten.index.Tensor" and batch_dims and 0 in batch_dims:
            index = args[1][0] if isinstance(args[1], list) and args[1] else None
            if isinstance(index, Ref):
                pair = _dims(runs[0].get(index.name), runs[1].get(index.name))
                if not any(self.coeff(d) for d in pair):
                    raise _NotGeneric(f"{node.name} indexes the batch with fixed indices")
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
            raise _NotGeneric(f"{node.name}: cannot place the batch in {target}")
        p = batch_dims[0]
        m_in = self.coeff(shape[p]) or 0
        prefix = math.prod(d[0] for d in shape[:p])
        numel = prefix * m_in * self.size * math.prod(d[0] for d in shape[p + 1 :])
        ints = [t for t in target if isinstance(t, int)]
        known = math.prod(t for t in ints if t != -1)
        resolved = [numel // known if t == -1 else t for t in ints] if known else ints
        q = _batch_position(resolved, prefix, self.size)
        if q is None:
            raise _NotGeneric(f"{node.name}: cannot place the batch in {target}")
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
            raise _NotGeneric(f"{node.name} slices within the batch")
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
