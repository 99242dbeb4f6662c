"""ONNX ``Resize`` and ``Upsample`` -> ATen ``upsample_*`` ops, where the two agree exactly.

A resize maps output pixel ``o`` of an axis to input coordinate ``c(o)`` and then picks
(nearest) or interpolates (linear, cubic) input pixels there. ATen's ops fix ``c``; ONNX
chooses it with ``coordinate_transformation_mode``, and the nearest pick with
``nearest_mode``. The combinations that equal an ATen op (``s`` the scale out/in) are:

====================  ==========================  ===============================================
ONNX mode             coordinates, nearest_mode   ATen op
====================  ==========================  ===============================================
nearest               asymmetric ``o/s``, floor   ``upsample_nearest{1,2}d.vec``
nearest               half_pixel, round_prefer_   ``_upsample_nearest_exact2d.vec``
                      ceil ``(o+.5)/s-.5``
linear                half_pixel                  ``upsample_{linear1d,bilinear2d}.vec``
linear                align_corners               the same, ``align_corners=True``
cubic (a=-0.75)       half_pixel / align_corners  ``upsample_bicubic2d.vec``
====================  ==========================  ===============================================

``pytorch_half_pixel`` equals ``half_pixel`` when no resized axis has length 1. Only the
spatial axes (all but the first two) may be resized. Given scales, the output length is
``floor(in * s)`` and ATen receives the scales (its coordinates then use ``1/s``, as ONNX
does); given sizes, it receives the sizes. ``Upsample`` (opsets 7-9) and ``Resize`` at opset 10
use asymmetric coordinates, and onnxruntime rounds nearest ``floor`` when upsampling but
``ceil`` when downsampling, so downsampling is accepted only by integer factors (where both
agree).
"""

from __future__ import annotations

import math

from engine.errors import UnsupportedOpsError
from engine.io.importers.onnx._attrs import (
    attr_float,
    attr_floats,
    attr_int,
    attr_ints,
    attr_str,
    normalize_axis,
)
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode

__all__ = ["RESIZE_CONVERTERS"]


def _refuse(n: OnnxNode, what: str) -> UnsupportedOpsError:
    return UnsupportedOpsError(
        f"{n.op_type} {n.name!r} uses {what}, which no ATen resize computes; MPQ imports "
        "nearest (asymmetric+floor, or half_pixel+round_prefer_ceil), linear and cubic "
        "(half_pixel or align_corners) over the spatial axes, as torch.nn.functional."
        "interpolate exports them"
    )


def _floats(b: GraphBuilder, n: OnnxNode, i: int, what: str) -> list[float] | None:
    """Optional constant input ``i`` as floats; an empty tensor counts as absent."""
    t = b.const(n, i, what)
    return None if t is None or t.numel() == 0 else [float(v) for v in t.reshape(-1).tolist()]


def _target(b: GraphBuilder, n: OnnxNode, x: Val) -> tuple[list[float] | None, list[int] | None]:
    """Per-axis ``(scales, None)`` or ``(None, sizes)`` for every axis of ``x``."""
    rank = x.dim()
    if n.op_type == "Upsample" and b.opset < 9:
        scales, sizes = attr_floats(n, "scales"), None
    elif n.op_type == "Upsample" or b.opset == 10:
        scales, sizes = _floats(b, n, 1, "scales"), None
    else:
        scales = _floats(b, n, 2, "scales")
        sizes = None if scales is not None else b.ints(n, 3, "sizes")
    if scales is None and sizes is None:
        raise UnsupportedOpsError(f"{n.op_type} {n.name!r} has neither scales nor sizes")
    axes = list(range(rank))
    if n.op_type == "Resize" and b.opset >= 18 and (given := attr_ints(n, "axes")):
        axes = [normalize_axis(a, rank, n) for a in given]
    given_len = len(scales if scales is not None else sizes or [])
    if given_len != len(axes):
        raise UnsupportedOpsError(f"{n.op_type} {n.name!r} gives {given_len} values for {axes}")
    if sizes is not None and attr_str(n, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise _refuse(n, "keep_aspect_ratio_policy other than stretch")
    full_scales, full_sizes = [1.0] * rank, list(x.shape)
    for i, a in enumerate(axes):
        if scales is not None:
            full_scales[a] = scales[i]
        elif sizes is not None:
            full_sizes[a] = sizes[i]
    return (full_scales, None) if scales is not None else (None, full_sizes)


def resize(b: GraphBuilder, n: OnnxNode) -> Val:
    """``Resize`` / ``Upsample`` as one ATen ``upsample_*.vec`` op (see the module table)."""
    x = b.input(n, 0)
    k = x.dim() - 2
    if k not in (1, 2):
        raise _refuse(n, f"a rank-{x.dim()} input (MPQ resizes 3-D and 4-D tensors)")
    scales, sizes = _target(b, n, x)
    out = sizes or [math.floor(d * s) for d, s in zip(x.shape, scales or [], strict=True)]
    if out[:2] != x.shape[:2] or (scales is not None and scales[:2] != [1.0, 1.0]):
        raise _refuse(n, f"resizing the batch or channel axis ({x.shape} -> {out})")
    if min(out) <= 0 or (scales is not None and min(scales) <= 0):
        raise UnsupportedOpsError(f"{n.op_type} {n.name!r} resizes {x.shape} to {out}")
    if out == x.shape and (scales is None or set(scales) == {1.0}):
        return x  # a scale near 1 keeps the size but still moves the sampling points
    mode = attr_str(n, "mode", "nearest")
    legacy = n.op_type == "Upsample" or b.opset == 10
    coords = "asymmetric" if legacy else attr_str(n, "coordinate_transformation_mode", "half_pixel")
    if coords == "pytorch_half_pixel" and min(out[2:]) > 1:
        coords = "half_pixel"
    if attr_int(n, "antialias", 0) and any(o < d for o, d in zip(out, x.shape, strict=True)):
        raise _refuse(n, "antialiased downsampling")
    spatial = (out[2:], None) if scales is None else (None, scales[2:])
    if mode == "nearest":
        rounding = "simple" if legacy else attr_str(n, "nearest_mode", "round_prefer_floor")
        if coords == "asymmetric" and _floor_agrees(x.shape[2:], out[2:], scales, rounding):
            return b.emit(f"aten.upsample_nearest{k}d.vec", x, *spatial)
        if coords == "half_pixel" and rounding == "round_prefer_ceil" and k == 2:
            return b.emit("aten._upsample_nearest_exact2d.vec", x, *spatial)
        raise _refuse(n, f"nearest with {coords} coordinates and nearest_mode {rounding}")
    if coords not in ("half_pixel", "align_corners"):
        raise _refuse(n, f"{mode} with {coords} coordinates")
    corners = coords == "align_corners"
    if mode == "linear":
        op = "aten.upsample_linear1d.vec" if k == 1 else "aten.upsample_bilinear2d.vec"
        return b.emit(op, x, spatial[0], corners, spatial[1])
    cubic_a = attr_float(n, "cubic_coeff_a", -0.75)
    if mode == "cubic" and k == 2 and cubic_a == -0.75 and not attr_int(n, "exclude_outside", 0):
        return b.emit("aten.upsample_bicubic2d.vec", x, spatial[0], corners, spatial[1])
    raise _refuse(n, f"mode {mode} (cubic_coeff_a {cubic_a}) on {k} spatial axes")


def _floor_agrees(
    size: list[int], out: list[int], scales: list[float] | None, rounding: str
) -> bool:
    """Whether asymmetric nearest with ``rounding`` picks the pixels ``floor`` (ATen) picks.

    Every rounding agrees where each coordinate ``o * r`` is an integer: when the step
    ``r`` (``1/s`` given scales, ``in/out`` given sizes) is. onnxruntime's ``simple``
    rounding (Upsample, Resize-10) floors when upsampling too.
    """
    if rounding == "floor":
        return True
    steps = [1 / s for s in scales[2:]] if scales is not None else None
    steps = steps or [i / o for i, o in zip(size, out, strict=True)]
    if all(float(r).is_integer() for r in steps):
        return True
    return rounding == "simple" and all(o >= i for i, o in zip(size, out, strict=True))


RESIZE_CONVERTERS = {"Resize": resize, "Upsample": resize}
