"""A dynamic batch in the exported graph, for a model with :attr:`IRModel.batch`.

The converters write shapes as constants -- a ``Reshape`` target, an ``Expand``
size, a factory's shape, ``Resize`` sizes, the broadcast shape of ``index``
columns -- computed from the static shapes of the IR at its stored batch ``B``.
Rather than teach every converter the batch, the exporter converts the model at
``B`` and at two probe batches ``p`` (``ir.at_batch(p)``, :data:`PROBES`) and
compares what each conversion wrote (:class:`Written`):

- every node (op, inputs, outputs, attributes) and every initializer other than
  0-d / 1-D INT64 ones (shape arguments, ``Range`` bounds) must be the same at
  every batch;
- each element of an INT64 constant is either the same at every batch (it stays a
  constant) or ``c·p`` at every batch ``p`` for one integer ``c >= 1``: it is then
  computed in the graph. The constant becomes ``Concat(static runs, Mul(batch,
  [c]), ...)`` (``Squeeze`` d to 0-d for a scalar), with ``batch = Shape(x,
  start=0, end=1)`` of the first batched input ``x``, computed once at the top of
  the graph;
- each dimension of a graph input or output is likewise fixed or ``c·p``: the
  latter is written as ``dim_param`` ``"batch"`` (``c = 1``) or ``"c*batch"``.

Anything else -- a converter whose nodes, attributes, float constants or
integers change with the batch in another way (``roll`` of the flattened tensor
wraps at ``N·k``) -- leaves the export at the fixed batch ``B``, with a note
naming the IR node (:func:`dynamic_batch` returns the note). Only elements that
are ``c·B`` are replaced, so at batch ``B`` the dynamic graph computes exactly
what the static one does. The one converter that must write differently is
``arange``, whose values (not only its shape) follow the batch: with
:attr:`GraphBuilder.any_batch` set it writes ``Range`` of scalar bounds, and a
bound ``c·p`` is computed like a shape. The comparison assumes that an integer
which is ``c·p`` at three batches is ``c·n`` at every batch ``n``: converters
compute sizes from shapes with products and copies, never piecewise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.io.export._builder import GraphBuilder
from engine.io.export._tensors import INT64
from engine.ir import IRModel

__all__ = ["PROBES", "Shape", "Written", "dynamic_batch", "written"]

PROBES = (2, 3, 5)
"""Probe batches: the first two that differ from the stored batch are used."""

Shape = tuple[int | str, ...]


@dataclass(frozen=True)
class Written:
    """What one conversion wrote, as far as the batch can change it.

    Attributes:
        batch: the batch it was converted at.
        nodes: the encoded nodes, in order, and ``sources`` the IR node writing each.
        initializers: name -> (data type, dims, raw data of a 0-d / 1-D INT64
            constant, else a digest of it) and ``init_sources`` the IR node of each.
        inputs / outputs: the static shapes of the graph inputs and outputs.
    """

    batch: int
    nodes: tuple[bytes, ...]
    sources: tuple[str, ...]
    initializers: dict[str, tuple[int, tuple[int, ...], bytes]]
    init_sources: dict[str, str]
    inputs: tuple[tuple[int, ...], ...]
    outputs: tuple[tuple[int, ...], ...]


def written(
    b: GraphBuilder,
    batch: int,
    inputs: Sequence[tuple[int, ...]],
    outputs: Sequence[tuple[int, ...]],
) -> Written:
    """Reduce a finished conversion at ``batch`` to a :class:`Written`."""
    inits = {
        i.name: (i.data_type, i.dims, i.raw if _is_ints(i.data_type, i.dims) else _digest(i.raw))
        for i in b.initializers
    }
    return Written(
        batch,
        tuple(b.nodes),
        tuple(b.sources),
        inits,
        {i.name: i.source for i in b.initializers},
        tuple(inputs),
        tuple(outputs),
    )


@dataclass(frozen=True)
class _Batched:
    """An INT64 constant whose elements are ``coeffs[i]·batch`` (``coeffs[i] = 0``: fixed)."""

    name: str
    scalar: bool
    values: tuple[int, ...]
    coeffs: tuple[int, ...]


def dynamic_batch(
    ir: IRModel, b: GraphBuilder, probes: Sequence[Written]
) -> tuple[list[Shape], list[Shape]] | str:
    """Make the conversion in ``b`` (at the stored batch) run at any batch.

    Args:
        ir: the model exported (its ``batch`` set).
        b: the finished conversion at ``ir.batch.size``; on success its batch-sized
            INT64 constants are replaced by the nodes computing them (placed first).
        probes: the conversion at ``ir.batch.size`` then at each probe batch.

    Returns:
        The input and output shapes with ``dim_param`` s, or, when the export must
        keep its fixed batch, a note saying why (``b`` is then left as it was).
    """
    assert ir.batch is not None and probes[0].batch == ir.batch.size
    main, batches = probes[0], [w.batch for w in probes]
    why = _structure(ir, probes)
    if why:
        return why
    constants = []
    for name, (dtype, dims, _) in main.initializers.items():
        if not _is_ints(dtype, dims):
            continue
        values = [np.frombuffer(w.initializers[name][2], "<i8").tolist() for w in probes]
        found = [_coeff(column, batches) for column in zip(*values, strict=True)]
        coeffs = [c for c in found if c is not None]
        if len(coeffs) != len(found):
            return _note(ir, main.init_sources[name])
        if any(coeffs):
            constants.append(_Batched(name, not dims, tuple(values[0]), tuple(coeffs)))
    shapes = [_dims([w.inputs[i] for w in probes], batches) for i in range(len(main.inputs))]
    outs = [_dims([w.outputs[i] for w in probes], batches) for i in range(len(main.outputs))]
    if any(s is None for s in (*shapes, *outs)):
        return _note(ir, "")
    _compute(b, ir.batch.inputs[0], constants)
    return [s for s in shapes if s is not None], [s for s in outs if s is not None]


def _structure(ir: IRModel, probes: Sequence[Written]) -> str:
    """A note when the nodes or non-shape initializers differ between probes, else ""."""
    main = probes[0]
    for w in probes[1:]:
        if w.nodes != main.nodes:
            return _note(ir, _at(main.sources, _first_difference(main.nodes, w.nodes)))
        names = tuple(main.initializers)
        if tuple(w.initializers) != names:
            name = _at(names, _first_difference(names, tuple(w.initializers)))
            return _note(ir, main.init_sources.get(name, ""))
        for name, (dtype, dims, raw) in main.initializers.items():
            other = w.initializers[name]
            if _is_ints(dtype, dims) and other[:2] == (dtype, dims):
                continue  # the values are compared element by element
            if other != (dtype, dims, raw):
                return _note(ir, main.init_sources[name])
    return ""


def _compute(b: GraphBuilder, first: str, constants: Sequence[_Batched]) -> None:
    """Replace each batched constant by nodes computing it; put those nodes first."""
    if not constants:
        return
    start, b.source = len(b.nodes), ""
    batch = b.add("Shape", [first], hint="batch", start=0, end=1)  # [n]
    b.drop_initializers({c.name for c in constants})
    for c in constants:
        parts: list[str] = []
        static: list[int] = []
        for value, coeff in zip(c.values, c.coeffs, strict=True):
            if not coeff:
                static.append(value)
                continue
            if static:
                parts.append(b.ints(static))
                static = []
            scaled = b.add("Mul", [batch, b.ints([coeff])], hint=c.name) if coeff > 1 else batch
            parts.append(scaled)
        if static:
            parts.append(b.ints(static))
        if c.scalar:
            b.add("Squeeze", parts, out=c.name)
        elif len(parts) == 1:
            b.add("Identity", parts, out=c.name)
        else:
            b.add("Concat", parts, out=c.name, axis=0)
    b.nodes[:] = b.nodes[start:] + b.nodes[:start]
    b.sources[:] = b.sources[start:] + b.sources[:start]


def _coeff(values: Sequence[int], batches: Sequence[int]) -> int | None:
    """0 when ``values`` are all equal, ``c >= 1`` when ``values[i] = c·batches[i]``, else None."""
    if all(v == values[0] for v in values):
        return 0
    c, r = divmod(values[0], batches[0])
    if r or c < 1 or any(v != c * n for v, n in zip(values, batches, strict=True)):
        return None
    return c


def _dims(shapes: Sequence[tuple[int, ...]], batches: Sequence[int]) -> Shape | None:
    """A shape with each batch-proportional dim as ``dim_param`` (None: one is not)."""
    if any(len(s) != len(shapes[0]) for s in shapes):
        return None
    out: list[int | str] = []
    for column in zip(*shapes, strict=True):
        c = _coeff(column, batches)
        if c is None:
            return None
        out.append(column[0] if c == 0 else "batch" if c == 1 else f"{c}*batch")
    return tuple(out)


def _first_difference(a: Sequence[object], b: Sequence[object]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))


def _at(items: Sequence[str], i: int) -> str:
    """``items[i]``, the last item past the end, "" when there are none."""
    return items[min(i, len(items) - 1)] if items else ""


def _note(ir: IRModel, source: str) -> str:
    assert ir.batch is not None
    where = "the graph's inputs and outputs"
    if source:
        where = f"node {source!r} ({ir.node(source).op})"
    return (
        f"exported with a fixed batch of {ir.batch.size}: what the exporter writes for {where} "
        "does not follow the batch, so the file takes only that batch"
    )


def _is_ints(data_type: int, dims: tuple[int, ...]) -> bool:
    return data_type == INT64 and len(dims) <= 1


def _digest(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=16).digest()
