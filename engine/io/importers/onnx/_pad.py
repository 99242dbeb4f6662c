"""ONNX ``Pad`` -> ``aten.constant_pad_nd.default`` or ``aten.pad.default``.

ONNX lists pads as ``[b_1, ..., b_r, e_1, ..., e_r]`` (begin then end, per axis in order);
ATen lists them from the last dim backwards, ``[b_r, e_r, b_(r-1), e_(r-1), ...]``, and may
stop before the first dims. Negative pads crop: they become ``aten.slice.Tensor`` first, so
every mode then pads with non-negative amounts. Modes: ``constant`` (with ``constant_value``),
``reflect`` (mirror without repeating the edge), ``edge`` (ATen ``replicate``) and, from
opset 19, ``wrap`` (ATen ``circular``).
"""

from __future__ import annotations

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_float, attr_ints, attr_str, normalize_axis
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode

__all__ = ["PAD_CONVERTERS", "aten_pad_spec"]

_MODES = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}


def aten_pad_spec(begins: list[int], ends: list[int]) -> list[int]:
    """Per-dim pads (dim order) as ATen's list: last dim first, leading zero pairs dropped.

    >>> aten_pad_spec([0, 0, 1, 2], [0, 0, 3, 4])
    [2, 4, 1, 3]
    """
    spec: list[int] = []
    for begin, end in zip(reversed(begins), reversed(ends), strict=True):
        spec += [begin, end]
    while len(spec) > 2 and spec[-2:] == [0, 0]:
        spec = spec[:-2]
    return spec


def _pads(b: GraphBuilder, n: OnnxNode, rank: int) -> tuple[list[int], list[int]]:
    """Begin and end pads for every dim of a rank-``rank`` input (``axes``: opset 18)."""
    if b.opset < 11:
        pads = attr_ints(n, "pads")
        axes = None
    else:
        pads = b.ints(n, 1, "pads")
        axes = b.ints(n, 3, "axes") if b.opset >= 18 else None
    dims = list(range(rank)) if axes is None else [normalize_axis(a, rank, n) for a in axes]
    if pads is None or len(pads) != 2 * len(dims) or len(set(dims)) != len(dims):
        raise CorruptFileError(f"Pad {n.name!r} has pads {pads} for axes {dims} (rank {rank})")
    begins, ends = [0] * rank, [0] * rank
    for i, d in enumerate(dims):
        begins[d], ends[d] = pads[i], pads[len(dims) + i]
    return begins, ends


def _value(b: GraphBuilder, n: OnnxNode, x: Val) -> bool | int | float:
    """The constant mode's fill: attribute ``value`` before opset 11, input 2 from then on."""
    if b.opset < 11:
        value: bool | int | float = attr_float(n, "value", 0.0)
    else:
        t = b.const(n, 2, "constant_value")
        if t is None:
            return 0
        if t.numel() != 1:
            raise CorruptFileError(f"Pad {n.name!r} has a constant_value of shape {list(t.shape)}")
        value = t.reshape(()).item()
    return value if x.dtype.is_floating_point else int(value)


def pad(b: GraphBuilder, n: OnnxNode) -> Val:
    """Crop negative pads with slices, then pad the rest in the node's mode."""
    x = b.input(n, 0)
    mode = attr_str(n, "mode", "constant")
    if mode != "constant" and mode not in _MODES:
        raise UnsupportedOpsError(
            f"Pad {n.name!r} has mode {mode!r}; MPQ supports constant, reflect, edge and wrap"
        )
    begins, ends = _pads(b, n, x.dim())
    for d, (begin, end) in enumerate(zip(begins, ends, strict=True)):
        if begin < 0 or end < 0:
            stop = x.shape[d] - max(-end, 0)
            x = b.emit("aten.slice.Tensor", x, d, max(-begin, 0), stop, 1, tag="crop")
    begins, ends = [max(p, 0) for p in begins], [max(p, 0) for p in ends]
    if not any(begins) and not any(ends):
        return x
    spec = aten_pad_spec(begins, ends)
    if mode == "constant":
        return b.emit("aten.constant_pad_nd.default", x, spec, _value(b, n, x))
    return b.emit("aten.pad.default", x, spec, _MODES[mode])


PAD_CONVERTERS = {"Pad": pad}
