"""ATen -> ONNX: pooling.

- ``max_pool{1,2}d(x, k, stride, pad, dilation, ceil)`` -> ``MaxPool``; ``avg_pool{1,2}d(x,
  k, stride, pad, ceil, count_include_pad, divisor)`` -> ``AveragePool``; a
  ``divisor_override`` d multiplies ``AveragePool(count_include_pad=1)`` (the window sum
  over ``prod(k)``) by ``prod(k) / d``;
- ``adaptive_avg_pool{1,2}d(x, out)``: output 1 -> ``GlobalAveragePool``; sizes dividing
  the input -> ``AveragePool`` with kernel = stride = ``in / out``; any other size as
  torch's windows ``[floor(i in / out), ceil((i + 1) in / out))``, one averaging matrix
  ``P[in, out]`` per axis: ``x @ P_w`` along the width, ``P_h^T @ .`` along the height.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from engine.io.export._builder import GraphBuilder
from engine.io.export._ops_tensor import Converter, arg, int_list, pos
from engine.ir import Node

__all__ = ["POOL_OPS"]


def _pool(op_type: str, k: int) -> Converter:
    def convert(b: GraphBuilder, n: Node) -> None:
        kernel = int_list(pos(n)[1], k)
        stride = arg(n, 2, "stride", [])
        stride = kernel if stride in ([], None) else int_list(stride, k)
        pads = int_list(arg(n, 3, "padding", 0), k) * 2
        attrs: dict[str, Any] = {"kernel_shape": kernel, "strides": stride, "pads": pads}
        divisor = None
        if op_type == "MaxPool":
            attrs["dilations"] = int_list(arg(n, 4, "dilation", 1), k)
            attrs["ceil_mode"] = int(bool(arg(n, 5, "ceil_mode", False)))
        else:
            attrs["ceil_mode"] = int(bool(arg(n, 4, "ceil_mode", False)))
            attrs["count_include_pad"] = int(bool(arg(n, 5, "count_include_pad", True)))
            divisor = arg(n, 6, "divisor_override")
        x = b.value(pos(n)[0])
        if divisor is None:
            b.add(op_type, [x], out=n.name, **attrs)
            return
        attrs["count_include_pad"] = 1
        mean = b.add(op_type, [x], hint=n.name, **attrs)
        factor = b.scalar(math.prod(kernel) / int(divisor), b.meta[n.name].dtype)
        b.add("Mul", [mean, factor], out=n.name)

    return convert


def _averaging(size_in: int, size_out: int, dtype: torch.dtype) -> torch.Tensor:
    """``P[in, out]``: column ``i`` averages torch's adaptive window ``i``."""
    p = torch.zeros(size_in, size_out, dtype=dtype)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)
        p[start:end, i] = 1.0 / (end - start)
    return p


def _adaptive_avg(b: GraphBuilder, n: Node) -> None:
    x_meta = b.meta[pos(n)[0].name]
    out_size = b.meta[n.name].shape[2:]
    in_size = x_meta.shape[2:]
    x = b.value(pos(n)[0])
    if all(o == 1 for o in out_size):
        b.add("GlobalAveragePool", [x], out=n.name)
        return
    if not any(i % o for i, o in zip(in_size, out_size, strict=True)):
        kernel = [i // o for i, o in zip(in_size, out_size, strict=True)]
        b.add("AveragePool", [x], out=n.name, kernel_shape=kernel, strides=kernel)
        return
    last = _averaging(in_size[-1], out_size[-1], x_meta.dtype)
    y = b.add("MatMul", [x, b.constant(last, f"{n.name}/pool")], hint=n.name)
    if len(in_size) == 1:
        b.add("Identity", [y], out=n.name)
        return
    first = _averaging(in_size[0], out_size[0], x_meta.dtype).T.contiguous()
    b.add("MatMul", [b.constant(first, f"{n.name}/pool"), y], out=n.name)


_A = "aten."
POOL_OPS: dict[str, Converter] = {
    _A + "max_pool1d.default": _pool("MaxPool", 1),
    _A + "max_pool2d.default": _pool("MaxPool", 2),
    _A + "avg_pool1d.default": _pool("AveragePool", 1),
    _A + "avg_pool2d.default": _pool("AveragePool", 2),
    _A + "adaptive_avg_pool1d.default": _adaptive_avg,
    _A + "adaptive_avg_pool2d.default": _adaptive_avg,
}
