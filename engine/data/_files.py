"""Reading a data file's arrays safely: ``.npz`` and safetensors, nothing unpickled.

File formats, recognised by their bytes, not their extension:

- ``.npz`` (zip magic ``PK``): every member must be a ``.npy`` array. Each
  member's header is parsed before :func:`numpy.load` (``allow_pickle=False``)
  reads it: object arrays (which need pickle) are refused unread, and a declared
  shape must fit in the member's declared size, whose sum is capped by ``max_bytes``.
- safetensors (8-byte header length, then ``{``): read by
  :func:`engine.ir.read_safetensors`, which trusts nothing.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from engine.errors import (
    CorruptFileError,
    DataDtypeError,
    DataFormatError,
    DataTooLargeError,
    EmptyDataError,
    PickledDataError,
)
from engine.ir import read_safetensors

__all__ = ["MAX_ARRAYS", "array_names", "read_arrays"]

MAX_ARRAYS = 1024

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError)


def read_arrays(path: Path, max_bytes: int) -> dict[str, torch.Tensor]:
    """The file's arrays in file order, after size and format checks."""
    size = path.stat().st_size
    if size == 0:
        raise EmptyDataError(f"{path.name!r} is empty (0 bytes)")
    if size > max_bytes:
        raise DataTooLargeError(f"{path.name!r} is {size} bytes; the limit is {max_bytes}")
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] in _ZIP_MAGIC:
        return _read_npz(path, max_bytes)
    if len(head) == 9 and head[8:9] == b"{":
        return read_safetensors(path)[0]
    kind = "a single .npy array" if head.startswith(b"\x93NUMPY") else "not a known format"
    raise DataFormatError(
        f"{path.name!r} is {kind}; upload an .npz (np.savez(path, x=..., labels=...)) or a "
        ".safetensors file with one array per model input"
    )


def array_names(path: Path) -> tuple[str, ...]:
    """The names of a data file's arrays, from its directory or header alone (no data read).

    For a file already accepted by :func:`read_arrays` (an upload kept as a dataset), so
    a service can tell whether it holds ``labels`` without loading it.

    Raises:
        CorruptFileError: neither a readable .npz directory nor a safetensors header.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head[:4] in _ZIP_MAGIC:
                with zipfile.ZipFile(path) as zf:
                    return tuple(n.removesuffix(".npy") for n in zf.namelist())
            (n,) = struct.unpack("<Q", head)
            header = json.loads(f.read(n).decode())
        return tuple(k for k in header if k != "__metadata__")
    except (*_ZIP_ERRORS, struct.error, ValueError, TypeError) as exc:
        raise CorruptFileError(f"{path.name!r}: its array names cannot be read ({exc})") from None


def _read_npz(path: Path, max_bytes: int) -> dict[str, torch.Tensor]:
    file = path.name
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            _check_members(file, infos, max_bytes)
            for info in infos:
                _check_npy_header(file, zf, info)
        out: dict[str, torch.Tensor] = {}
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arr = npz[key]
                except ValueError as exc:
                    if "allow_pickle" in str(exc):
                        raise PickledDataError(_pickle_message(file, key)) from None
                    raise CorruptFileError(f"{file!r}: array {key!r} is damaged: {exc}") from None
                out[key] = _from_numpy(file, key, arr)
        return out
    except _ZIP_ERRORS as exc:
        raise CorruptFileError(f"{file!r} is a damaged or truncated .npz ({exc})") from None


def _check_members(file: str, infos: list[zipfile.ZipInfo], max_bytes: int) -> None:
    if len(infos) > MAX_ARRAYS:
        raise DataFormatError(f"{file!r} has {len(infos)} members; at most {MAX_ARRAYS} arrays")
    names = [i.filename for i in infos]
    odd = [n for n in names if not n.endswith(".npy")]
    if odd:
        raise DataFormatError(
            f"{file!r} holds {odd[:5]}, which are not .npy arrays; an .npz must hold only "
            "arrays (save it with np.savez)"
        )
    if len(set(names)) != len(names):
        raise DataFormatError(f"{file!r} holds the same array name twice; names must be unique")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise DataTooLargeError(f"{file!r} unpacks to {total} bytes; the limit is {max_bytes}")


def _check_npy_header(file: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Parse a member's .npy header (no data read): refuse object dtypes and lying shapes."""
    key = info.filename.removesuffix(".npy")
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise DataFormatError(f"{file!r}: array {key!r} uses .npy format {version}")
        except ValueError as exc:
            raise CorruptFileError(
                f"{file!r}: array {key!r} has a bad .npy header ({exc})"
            ) from None
    if dtype.hasobject:
        raise PickledDataError(_pickle_message(file, key))
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size:
        raise CorruptFileError(
            f"{file!r}: array {key!r} declares shape {shape} ({nbytes} bytes) but its member "
            f"holds {info.file_size} bytes"
        )


def _pickle_message(file: str, key: str) -> str:
    return (
        f"{file!r}: array {key!r} is an object array, which only pickle can read, and MPQ "
        "never unpickles uploads; store numeric arrays (e.g. np.stack of the samples)"
    )


def _from_numpy(file: str, key: str, arr: np.ndarray) -> torch.Tensor:
    """A numeric array as a torch tensor; unsigned ints wider than 8 bits become int64."""
    dt = arr.dtype
    if dt.kind in "fib" and not (dt.kind == "f" and dt.itemsize > 8):
        return torch.from_numpy(np.ascontiguousarray(arr.astype(dt.newbyteorder("="), copy=False)))
    if dt.kind == "u":
        if dt.itemsize == 1:
            return torch.from_numpy(np.ascontiguousarray(arr))
        if arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise DataDtypeError(f"{file!r}: array {key!r} ({dt}) holds values above int64")
        return torch.from_numpy(arr.astype(np.int64))
    raise DataDtypeError(
        f"{file!r}: array {key!r} has dtype {dt}, which MPQ cannot use; store inputs as "
        "floating point or integer arrays"
    )
