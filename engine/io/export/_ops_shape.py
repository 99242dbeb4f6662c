"""ATen -> ONNX: splitting, stacking, padding, tiling, triangles and indexing.

- ``split(x, size, dim)`` / ``split_with_sizes(x, sizes, dim)`` / ``chunk(x, n, dim)``
  -> one ``Split(x, sizes, axis)`` with one output per piece (``chunk`` pieces are
  ``ceil(len / n)`` long, the last shorter, as torch cuts them); ``getitem(t, i)`` ->
  ``Identity`` of output ``i`` of a multi-output op;
- ``stack(xs, dim)`` -> ``Concat(Unsqueeze(x_i, dim), axis=dim)``;
- ``constant_pad_nd(x, pad, value)`` / ``pad(x, pad, mode, value)`` -> ``Pad(x, pads,
  value, axes)``: torch's ``pad`` lists (begin, end) pairs from the last axis
  backwards, ONNX all begins then all ends of ``axes``; modes constant / reflect /
  replicate / circular are ONNX's constant / reflect / edge / wrap;
- ``repeat(x, reps)`` / ``tile(x, reps)`` -> ``Tile`` (after a ``Reshape`` adding
  leading 1s when ``reps`` is longer than the rank; ``tile`` pads a shorter ``reps``
  with leading 1s); ``tril`` / ``triu(x, k)`` -> ``Trilu(x, k, upper)``;
- ``flip(x, dims)`` -> ``Slice(x, -1, INT64_MIN, dims, steps=-1)``; ``roll(x, s, d)`` ->
  per axis ``Concat(Slice(x, n - s, n), Slice(x, 0, n - s))`` (no dims: of the
  flattened tensor, reshaped back);
- ``gather(x, dim, idx)`` -> ``GatherElements(axis=dim)``;
- ``index.Tensor(x, [i_0, None, ...])``: one index tensor at axis ``a`` is
  ``Gather(x, i, axis=a)``; several are broadcast, stacked on a last axis and read by
  ``GatherND`` from ``x`` with the indexed axes moved first; the result's broadcast
  axes then move to the first indexed axis when the indexed axes are adjacent (torch's
  rule; else they stay in front). Boolean (mask) indices have data-dependent shapes and
  are refused.
"""

from __future__ import annotations

import math

import torch

from engine.errors import UnsupportedExportError
from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, operand, pos
from engine.ir import Node, Ref

__all__ = ["SHAPE_OPS"]


def _split(b: GraphBuilder, n: Node) -> None:
    x = pos(n)[0]
    shape = b.meta[x.name].shape
    dim = int(arg(n, 2, "dim", 0)) % len(shape)
    length = shape[dim]
    if n.op == "aten.split_with_sizes.default":
        sizes = [int(s) for s in pos(n)[1]]
    else:
        step = int(pos(n)[1])
        if n.op == "aten.chunk.default":
            step = max(1, math.ceil(length / step))
        sizes = [min(step, length - start) for start in range(0, length, step)] or [0]
    inputs = [b.value(x), b.ints(sizes)]
    b.outputs[n.name] = b.add_multi("Split", inputs, len(sizes), hint=n.name, axis=dim)


def _getitem(b: GraphBuilder, n: Node) -> None:
    parent, index = pos(n)[0], int(pos(n)[1])
    if not isinstance(parent, Ref) or parent.name not in b.outputs:
        raise UnsupportedExportError(f"{n.name}: getitem of {parent!r}, not a multi-output op")
    b.add("Identity", [b.outputs[parent.name][index]], out=n.name)


def _stack(b: GraphBuilder, n: Node) -> None:
    m = b.meta[n.name]
    dim = int(arg(n, 1, "dim", 0)) % len(m.shape)
    axes = b.ints([dim])
    parts = [b.add("Unsqueeze", [operand(b, v, m.dtype), axes], hint=n.name) for v in pos(n)[0]]
    b.add("Concat", parts, out=n.name, axis=dim)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad(b: GraphBuilder, n: Node) -> None:
    x = pos(n)[0]
    m = b.meta[x.name]
    pad = [int(p) for p in pos(n)[1]]
    if n.op == "aten.constant_pad_nd.default":
        mode, value = "constant", arg(n, 2, "value", 0)
    else:
        mode, value = arg(n, 2, "mode", "constant"), arg(n, 3, "value")
    if mode not in _PAD_MODES:
        raise UnsupportedExportError(f"{n.name}: pad mode {mode!r} is not exported")
    k = len(pad) // 2
    axes = [len(m.shape) - 1 - i for i in range(k)]
    pads = [pad[2 * i] for i in range(k)] + [pad[2 * i + 1] for i in range(k)]
    fill = b.scalar(0 if value is None else value, m.dtype) if mode == "constant" else ""
    inputs = [b.value(x), b.ints(pads), fill, b.ints(axes)]
    b.add("Pad", inputs, out=n.name, mode=_PAD_MODES[mode])


def _repeat(b: GraphBuilder, n: Node) -> None:
    x = pos(n)[0]
    shape, reps = b.meta[x.name].shape, [int(r) for r in pos(n)[1]]
    if n.op == "aten.tile.default":
        reps = [1] * (len(shape) - len(reps)) + reps
    data = b.value(x)
    if len(reps) > len(shape):
        full = [1] * (len(reps) - len(shape)) + list(shape)
        data = b.add("Reshape", [data, b.ints(full)], hint=n.name)
    b.add("Tile", [data, b.ints(reps)], out=n.name)


def _flip(b: GraphBuilder, n: Node) -> None:
    dims = [int(d) for d in pos(n)[1]]
    k = len(dims)
    starts, ends = b.ints([-1] * k), b.ints([-(2**63)] * k)
    inputs = [b.value(pos(n)[0]), starts, ends, b.ints(dims), b.ints([-1] * k)]
    b.add("Slice", inputs, out=n.name)


def _roll(b: GraphBuilder, n: Node) -> None:
    x = pos(n)[0]
    shape = b.meta[x.name].shape
    shifts, dims = [int(s) for s in pos(n)[1]], [int(d) for d in arg(n, 2, "dims", [])]
    data = b.value(x)
    if not dims:
        data = b.add("Reshape", [data, b.ints([-1])], hint=n.name)
        sizes, dims = [math.prod(shape)], [0]
    else:
        sizes = [shape[d] for d in dims]
    for shift, dim, size in zip(shifts, dims, sizes, strict=True):
        cut = size - shift % size if size else 0
        if cut in (0, size):
            continue
        axis = b.ints([dim])
        tail = b.add("Slice", [data, b.ints([cut]), b.ints([size]), axis], hint=n.name)
        head = b.add("Slice", [data, b.ints([0]), b.ints([cut]), axis], hint=n.name)
        data = b.add("Concat", [tail, head], hint=n.name, axis=dim)
    b.add("Reshape", [data, b.ints(b.meta[n.name].shape)], out=n.name)


def _trilu(upper: bool) -> Converter:
    def convert(b: GraphBuilder, n: Node) -> None:
        k = b.scalar(int(arg(n, 1, "diagonal", 0)), torch.int64)
        b.add("Trilu", [b.value(pos(n)[0]), k], out=n.name, upper=int(upper))

    return convert


def _gather(b: GraphBuilder, n: Node) -> None:
    x, dim, index = pos(n)[0], int(pos(n)[1]), pos(n)[2]
    b.add("GatherElements", [b.value(x), b.value(index)], out=n.name, axis=dim)


def _index(b: GraphBuilder, n: Node) -> None:
    x, indices = pos(n)[0], list(pos(n)[1])
    rank = len(b.meta[x.name].shape)
    axes = [a for a, v in enumerate(indices) if v is not None]
    for a in axes:
        if b.meta[indices[a].name].dtype in (torch.bool, torch.uint8):
            raise UnsupportedExportError(
                f"{n.name}: indexing with a boolean mask has a data-dependent shape; "
                "use torch.where or masked_fill instead"
            )
    if len(axes) == 1:
        b.add("Gather", [b.value(x), b.value(indices[axes[0]])], out=n.name, axis=axes[0])
        return
    rest = [d for d in range(rank) if d not in axes]
    data = b.value(x)
    if axes + rest != list(range(rank)):
        data = b.add("Transpose", [data], hint=n.name, perm=axes + rest)
    shapes = [b.meta[indices[a].name].shape for a in axes]
    shape = list(torch.broadcast_shapes(*shapes))  # type: ignore[no-untyped-call]
    last = b.ints([-1])
    columns = [
        b.add(
            "Unsqueeze",
            [
                b.add("Expand", [operand(b, indices[a], torch.int64), b.ints(shape)], hint=n.name),
                last,
            ],
            hint=n.name,
        )
        for a in axes
    ]
    coords = b.add("Concat", columns, hint=n.name, axis=-1)
    adjacent = axes == list(range(axes[0], axes[-1] + 1))
    front = axes[0] if adjacent else 0  # rest axes that stay before the broadcast ones
    if front == 0:
        b.add("GatherND", [data, coords], out=n.name)
        return
    gathered = b.add("GatherND", [data, coords], hint=n.name)
    nb, nr = len(shape), len(rest)
    perm = [nb + i for i in range(front)] + list(range(nb)) + [nb + i for i in range(front, nr)]
    b.add("Transpose", [gathered], out=n.name, perm=perm)


_A = "aten."
SHAPE_OPS: dict[str, Converter] = {
    _A + "split.Tensor": _split,
    _A + "split_with_sizes.default": _split,
    _A + "chunk.default": _split,
    "getitem": _getitem,
    _A + "stack.default": _stack,
    _A + "constant_pad_nd.default": _pad,
    _A + "pad.default": _pad,
    _A + "repeat.default": _repeat,
    _A + "tile.default": _repeat,
    _A + "flip.default": _flip,
    _A + "roll.default": _roll,
    _A + "tril.default": _trilu(False),
    _A + "triu.default": _trilu(True),
    _A + "gather.default": _gather,
    _A + "index.Tensor": _index,
}
