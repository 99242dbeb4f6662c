"""ONNX tensor data types and the bytes of initializers, incl. 4-bit packing.

``TensorProto.raw_data`` holds the elements in row-major order, little-endian.
INT4/UINT4 (opset 21) pack two elements per byte: element ``2i`` in the low
nibble of byte ``i``, element ``2i + 1`` in the high nibble, each as its 4-bit
two's complement (INT4) or unsigned value (UINT4); an odd count leaves the last
high nibble 0. Worked example (INT4)::

    pack_int4([1, -2, 7])  == b"\\xe1\\x07"    # 0x1 | 0xE << 4, then 0x7 | 0x0 << 4
    unpack_int4(b"\\xe1\\x07", 3, signed=True) == [1, -2, 7]
"""

from __future__ import annotations

import numpy as np
import torch

from engine.errors import UnsupportedExportError

__all__ = [
    "BOOL",
    "FLOAT",
    "FLOAT16",
    "INT4",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT4",
    "UINT8",
    "UINT16",
    "onnx_dtype",
    "pack_int4",
    "raw_bytes",
    "unpack_int4",
]

# TensorProto.DataType
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64 = 1, 2, 3, 4, 5, 6, 7
BOOL, FLOAT16, DOUBLE, BFLOAT16, UINT4, INT4 = 9, 10, 11, 16, 21, 22

_TORCH = {
    torch.float32: FLOAT,
    torch.float16: FLOAT16,
    torch.float64: DOUBLE,
    torch.bfloat16: BFLOAT16,
    torch.uint8: UINT8,
    torch.int8: INT8,
    torch.int16: INT16,
    torch.int32: INT32,
    torch.int64: INT64,
    torch.bool: BOOL,
}


def onnx_dtype(dtype: torch.dtype) -> int:
    """The ``TensorProto.DataType`` of a torch dtype.

    Raises:
        UnsupportedExportError: a dtype with no ONNX counterpart here.
    """
    try:
        return _TORCH[dtype]
    except KeyError:
        raise UnsupportedExportError(f"tensors of dtype {dtype} cannot be exported") from None


def raw_bytes(t: torch.Tensor) -> bytes:
    """Row-major little-endian bytes of ``t`` (bool as one byte 0/1, bfloat16 as 2 bytes)."""
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()


def pack_int4(codes: torch.Tensor, *, signed: bool = True) -> bytes:
    """Pack integer codes in ``[-8, 7]`` (signed) or ``[0, 15]`` two per byte, low nibble first.

    Args:
        codes: any shape; flattened in row-major order.
        signed: INT4 (two's complement nibbles) or UINT4.

    Raises:
        ValueError: a code outside the 4-bit range.
    """
    flat = codes.detach().reshape(-1).to(torch.int64)
    lo, hi = (-8, 7) if signed else (0, 15)
    if flat.numel() and (int(flat.min()) < lo or int(flat.max()) > hi):
        raise ValueError(f"4-bit codes must lie in [{lo}, {hi}]")
    nibbles = (flat & 0xF).numpy().astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def unpack_int4(data: bytes, n: int, *, signed: bool = True) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: the first ``n`` codes as int64 [n]."""
    b = np.frombuffer(data, dtype=np.uint8)
    nibbles = np.empty(b.size * 2, dtype=np.int64)
    nibbles[0::2], nibbles[1::2] = b & 0xF, b >> 4
    out = torch.from_numpy(nibbles[:n].copy())
    return torch.where(out > 7, out - 16, out) if signed else out
