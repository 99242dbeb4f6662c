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

from dataclasses import replace

import torch

from engine.ir._batch_trace import NotGeneric, trace_batch
from engine.ir._model import IRModel
from engine.ir._ops import QUANTIZABLE_OPS
from engine.ir._values import BatchDim, Node, Ref, Value

__all__ = ["DYNAMIC_BATCH", "generalize_batch"]

DYNAMIC_BATCH = 23
"""The batch importers give a model whose batch is dynamic (a symbol, ``dim_param``),
before :func:`generalize_batch` makes it any batch again: a prime, so that it is
rarely also a model dimension (which would make the literals ambiguous)."""


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
            nodes, sites, outputs = trace_batch(candidate, size, set(batched), aranges=aranges)
        except NotGeneric:
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
