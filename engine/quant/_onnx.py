"""What a weight scheme's ONNX emitter may use, without importing the exporter.

Weight schemes live at the level of the quantization primitives, below ONNX
export (:mod:`engine.io.export`). Their emitters receive the exporter's graph
builder as an argument typed by the :class:`OnnxGraph` protocol -- the four
methods they call -- and write initializer bytes with the helpers here.

The data type numbers are ``TensorProto.DataType`` values of the ONNX
specification (the same numbers :mod:`engine.io.export._tensors` uses; a test
checks that they agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol

import numpy as np
import torch

from engine.quant._packing import pack_bits

__all__ = [
    "FLOAT",
    "INT4",
    "INT8",
    "INT16",
    "INT32",
    "UINT8",
    "OnnxGraph",
    "int4_bytes",
    "le_bytes",
]

FLOAT: Final = 1
UINT8: Final = 2
INT8: Final = 3
INT16: Final = 5
INT32: Final = 6
INT4: Final = 22


class OnnxGraph(Protocol):
    """The part of the exporter's graph builder that weight emitters call."""

    def add(
        self,
        op_type: str,
        inputs: Sequence[str],
        *,
        out: str | None = None,
        hint: str = "v",
        **attrs: Any,
    ) -> str:
        """Append the node ``op_type(inputs)`` with attributes ``attrs``; return its output name."""
        ...

    def initializer(self, name: str, data_type: int, dims: Sequence[int], raw: bytes) -> str:
        """Add an initializer with raw (already packed) data; return its name."""
        ...

    def constant(self, t: torch.Tensor, hint: str = "const") -> str:
        """A new initializer holding ``t``; return its name."""
        ...

    def ints(self, values: Sequence[int]) -> str:
        """A 1-D int64 constant; return its name."""
        ...


def le_bytes(t: torch.Tensor) -> bytes:
    """Row-major little-endian bytes of ``t`` (``TensorProto.raw_data``)."""
    a = t.detach().contiguous().cpu().numpy()
    return a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()


def int4_bytes(codes: torch.Tensor) -> bytes:
    """Signed codes in ``[-8, 7]`` as ONNX INT4: two per byte, element ``2i`` in the low nibble.

    Each code's 4-bit two's complement is ``code & 0xF``; that stream is exactly
    :func:`~engine.quant._packing.pack_bits` at 4 bits.
    """
    flat = codes.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < -8 or int(flat.max()) > 7):
        raise ValueError("4-bit codes must lie in [-8, 7]")
    return bytes(np.asarray(pack_bits(flat & 0xF, 4)).tobytes())
