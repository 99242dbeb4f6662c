"""ATen -> ONNX: upsampling (``F.interpolate``'s ``upsample_*`` ops).

- nearest (``upsample_nearest{1,2}d``, ``_upsample_nearest_exact2d``): one ``Gather``
  per resized axis, of the source indices torch itself picks -- found at export by
  running the op on a ramp ``0, 1, ..., n-1`` along that axis -- so the result is
  torch's exactly, whatever the rounding of its scale (``floor(dst * in/out)``, or
  ``floor((dst + 0.5) * in/out)`` for nearest-exact);
- ``upsample_linear1d`` / ``upsample_bilinear2d`` / ``upsample_bicubic2d(x, size,
  align_corners, scales)`` -> ``Resize(mode=linear|cubic, cubic_coeff_a=-0.75)`` with
  ``coordinate_transformation_mode`` ``align_corners`` (torch's ``align_corners=True``:
  ``src = dst (in - 1) / (out - 1)``) or ``half_pixel`` (``src = (dst + 0.5) / s - 0.5``).
  Torch maps coordinates with ``s = scale_factor`` when it was given and ``out / in``
  otherwise, so the ``Resize`` gets ``scales`` in the first case and ``sizes`` in the
  second: the same ``s`` either way.
"""

from __future__ import annotations

from typing import Any

import torch

from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, pos
from engine.ir import Node, resolve

__all__ = ["RESIZE_OPS"]


def _nearest(b: GraphBuilder, n: Node) -> None:
    x = pos(n)[0]
    spatial = b.meta[x.name].shape[2:]
    out_spatial = b.meta[n.name].shape[2:]
    op = resolve(n.op)
    data = b.value(x)
    for k, (size_in, size_out) in enumerate(zip(spatial, out_spatial, strict=True)):
        ramp_shape = [1] * len(spatial)
        ramp_shape[k] = size_in
        ramp = torch.arange(size_in, dtype=torch.float32).reshape(ramp_shape).expand(spatial)
        with torch.no_grad():
            picked = op(ramp[None, None], *n.args[1:], **n.kwargs)[0, 0]
        index = picked.movedim(k, -1).reshape(-1, size_out)[0].round().to(torch.int64)
        if size_in == size_out and torch.equal(index, torch.arange(size_in)):
            continue
        data = b.add(
            "Gather", [data, b.constant(index, f"{n.name}/index")], hint=n.name, axis=2 + k
        )
    b.add("Identity", [data], out=n.name)


def _interpolate(mode: str) -> Converter:
    def convert(b: GraphBuilder, n: Node) -> None:
        x = pos(n)[0]
        align = bool(arg(n, 2, "align_corners", False))
        factors = arg(n, 3, "scale_factors")
        attrs: dict[str, Any] = {
            "mode": mode,
            "coordinate_transformation_mode": "align_corners" if align else "half_pixel",
        }
        if mode == "cubic":
            attrs["cubic_coeff_a"] = -0.75
        inputs = [b.value(x), ""]
        if factors is not None and not align:
            scales = torch.tensor([1.0, 1.0, *(float(f) for f in factors)], dtype=torch.float32)
            inputs.append(b.constant(scales, f"{n.name}/scales"))
        else:
            inputs += ["", b.ints(b.meta[n.name].shape)]
        b.add("Resize", inputs, out=n.name, **attrs)

    return convert


_A = "aten."
RESIZE_OPS: dict[str, Converter] = {
    _A + "upsample_nearest1d.vec": _nearest,
    _A + "upsample_nearest2d.vec": _nearest,
    _A + "_upsample_nearest_exact2d.vec": _nearest,
    _A + "upsample_linear1d.vec": _interpolate("linear"),
    _A + "upsample_bilinear2d.vec": _interpolate("linear"),
    _A + "upsample_bicubic2d.vec": _interpolate("cubic"),
}
