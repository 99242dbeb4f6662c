"""Small files that declare or expand to far more than their size: decoder amplification probes.

Each builder writes a real file of the kind a hostile client would upload, small on disk
and fast to make (no gigabyte is ever materialised here), for the engine's decoder tests and
the API's hostile-upload test.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "npz_bomb",
    "onnx_constant_of_shape",
    "onnx_like",
    "onnx_packed_varints",
    "pt2_with_json_member",
    "rss_kib",
    "safetensors_nested",
]


def npz_bomb(path: Path, *, shape: tuple[int, ...] = (2**28,)) -> Path:
    """An ``.npz`` whose one member ``x.npy`` is a valid, deflated float32 array of zeros.

    ``shape`` must hold a whole number of 16 MiB blocks (the default: 1 GiB, ~1 MB on disk;
    ``(4194304, 1, 8, 8)`` is 1 GiB of digits samples). Deflate output after a full flush
    does not depend on earlier data, so one compressed 16 MiB block of zeros is repeated;
    the CRC is that of the real contents, so an unbounded reader inflates it all.
    """
    head = io.BytesIO()
    gib = math.prod(shape) * 4 / 2**30
    np.lib.format.write_array_header_1_0(
        head, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    header = head.getvalue()
    block, repeats = bytes(1 << 24), int(gib * 64)
    assert repeats * len(block) == math.prod(shape) * 4, "whole 16 MiB blocks only"
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    body = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.flush(zlib.Z_FINISH)
    crc = zlib.crc32(header)
    for _ in range(repeats):
        crc = zlib.crc32(block, crc)
    size = len(header) + len(block) * repeats
    data = [first, *[body] * repeats, tail]
    csize = sum(map(len, data))
    name = b"x.npy"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, csize, size, 5, 0)
    central = struct.pack(
        "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, csize, size, 5, 0, 0, 0, 0,
        0, 0,
    )  # fmt: skip
    with open(path, "wb") as f:
        f.write(local + name)
        for piece in data:
            f.write(piece)
        offset = f.tell()
        f.write(central + name)
        cd_size = f.tell() - offset
        f.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, cd_size, offset, 0))
    return path


def safetensors_nested(path: Path, *, depth: int = 100_000) -> Path:
    """A safetensors file whose header nests arrays ``depth`` deep (and holds no tensor)."""
    header = b'{"__metadata__":' + b"[" * depth + b"]" * depth + b"}"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def onnx_packed_varints(path: Path, *, mib: int = 32) -> Path:
    """An ONNX ``ModelProto`` whose one initializer is an int64 tensor of ``mib`` MiB of
    one-byte packed varints (``mib`` Mi values: 8x that once decoded)."""
    count = mib << 20
    tensor = (
        _varint(1 << 3) + _varint(count)  # dims: [count] (a single varint, not packed)
        + _varint(2 << 3) + _varint(7)  # data_type INT64
        + _field(8, b"w")  # name
        + _field(7, bytes(count))  # int64_data, packed: count zeros
    )  # fmt: skip
    graph = _field(5, tensor) + _field(2, b"g")
    opset = _varint(2 << 3) + _varint(17)
    model = _varint(1 << 3) + _varint(8) + _field(8, opset) + _field(7, graph)
    path.write_bytes(model)
    return path


def onnx_like(path: Path, *, size: int) -> Path:
    """A sparse file of ``size`` bytes that starts like ONNX (``ir_version`` 8), then zeros."""
    with open(path, "wb") as f:
        f.write(b"\x08\x08")
        f.truncate(size)
    return path


def pt2_with_json_member(src: Path, dst: Path, *, mib: int = 64) -> Path:
    """``src`` (a real .pt2) plus a deflated ``models/extra.json`` of ``mib`` MiB: a list of
    ``mib`` * 128 Ki seven-digit integers of the digits 1 and 2 (compressing ~7x, under the
    archive's zip-bomb ratio), several times its size as Python objects."""
    rng = np.random.default_rng(0)
    digits = rng.integers(ord("1"), ord("3"), size=mib << 20, dtype=np.uint8).reshape(-1, 8)
    digits[:, 7] = ord(",")
    body = b"[" + digits.tobytes()[:-1] + b"]"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr(f"{root}/models/extra.json", body, zipfile.ZIP_DEFLATED, 1)
    return dst


def rss_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of process ``pid``, in KiB, from ``/proc``."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def onnx_constant_of_shape(path: Path, *, numel: int = 1 << 28) -> Path:
    """A ~140-byte ONNX model whose ``ConstantOfShape`` describes ``numel`` float32 ones
    (1 GiB by default), added to a [1, 4] input."""
    tensor = (
        _varint(1 << 3) + _varint(1)  # dims [1]
        + _varint(2 << 3) + _varint(7)  # INT64
        + _field(8, b"s")
        + _field(7, _varint(numel))  # int64_data
    )  # fmt: skip
    value = _varint(1 << 3) + _varint(1) + _varint(2 << 3) + _varint(1) + _field(9, b"\0\0\x80?")
    attr = _field(1, b"value") + _field(5, value) + _varint(20 << 3) + _varint(4)  # TENSOR
    fill = _field(1, b"s") + _field(2, b"c") + _field(4, b"ConstantOfShape") + _field(5, attr)
    add = _field(1, b"x") + _field(1, b"c") + _field(2, b"y") + _field(4, b"Add")
    dims = _field(1, _varint(1 << 3) + _varint(1)) + _field(1, _varint(1 << 3) + _varint(4))
    typ = _field(1, _varint(1 << 3) + _varint(1) + _field(2, dims))  # tensor_type FLOAT [1, 4]
    graph = (
        _field(1, fill) + _field(1, add) + _field(2, b"g") + _field(5, tensor)
        + _field(11, _field(1, b"x") + _field(2, typ))
        + _field(12, _field(1, b"y") + _field(2, typ))
    )  # fmt: skip
    opset = _varint(2 << 3) + _varint(17)
    path.write_bytes(_varint(1 << 3) + _varint(8) + _field(8, opset) + _field(7, graph))
    return path
