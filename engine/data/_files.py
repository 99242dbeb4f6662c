"""Reading a data file's arrays safely: ``.npz`` and safetensors, nothing unpickled.

File formats, recognised by their bytes, not their extension:

- ``.npz`` (zip magic ``PK``): every member must be a ``.npy`` array, stored or
  deflated (what ``np.savez`` / ``np.savez_compressed`` write). Before anything is
  decompressed, the zip directory is checked (member count, declared sizes, whose sum
  is capped by ``max_bytes``, and compression ratio), then each member's ``.npy``
  header alone is parsed: object arrays (which need pickle) are refused unread, and the
  declared shape and dtype must fit in the member's declared size. Only then does
  :func:`numpy.load` (``allow_pickle=False``) read the arrays; :mod:`zipfile` never
  inflates a member past its declared size.
- safetensors (8-byte header length, then ``{``): the header alone is checked first
  (:func:`engine.data._headers.check_safetensors_header`: length, nesting depth,
  offsets inside the file, declared bytes within ``max_bytes``), then the file is read
  by :func:`engine.ir.read_safetensors`, which trusts nothing either.

Messages name the file as the user named it (``name``), never by the path it was
stored under, and carry no third-party exception text (it is logged instead).
"""

from __future__ import annotations

import json
import logging
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from engine.data._headers import check_safetensors_header
from engine.errors import (
    CorruptFileError,
    DataDtypeError,
    DataFormatError,
    DataTooLargeError,
    EmptyDataError,
    PickledDataError,
)
from engine.ir import read_safetensors

__all__ = ["MAX_ARRAYS", "MAX_RATIO", "array_names", "read_arrays"]

log = logging.getLogger(__name__)

MAX_ARRAYS = 1024
MAX_RATIO = 500.0
"""Largest uncompressed/compressed ratio of an .npz member over :data:`RATIO_FLOOR` bytes.

Deflate tops out near 1,030:1, reached only by near-constant data; real arrays of
samples compress far less. Memory is bounded by ``max_bytes`` whatever the ratio: this
check only names a zip bomb for what it is."""
RATIO_FLOOR = 32 * 1024 * 1024
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError)


def read_arrays(path: Path, max_bytes: int, *, name: str | None = None) -> dict[str, torch.Tensor]:
    """The file's arrays in file order, after size and format checks.

    Args:
        path: the data file.
        max_bytes: limit on the file's size and on the bytes its arrays declare (what
            they decode to), checked before anything is decompressed or read.
        name: how messages call the file (the name the user gave it); ``path.name``
            when ``None``.

    Raises:
        DataTooLargeError: the file, or what it declares, is over ``max_bytes``.
        EmptyDataError, DataFormatError, CorruptFileError, PickledDataError,
        DataDtypeError: see :mod:`engine.errors`.
    """
    file = path.name if name is None else name
    size = path.stat().st_size
    if size == 0:
        raise EmptyDataError(f"{file!r} is empty (0 bytes)")
    if size > max_bytes:
        raise DataTooLargeError(
            f"{file!r} is {size} bytes; the limit is {max_bytes} bytes. Upload fewer samples"
        )
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] in _ZIP_MAGIC:
        return _read_npz(path, file, max_bytes)
    if len(head) == 9 and head[8:9] == b"{":
        check_safetensors_header(path, max_bytes=max_bytes, name=file)
        try:
            return read_safetensors(path)[0]
        except CorruptFileError as exc:
            # its messages name the stored path; say the user's name instead
            raise CorruptFileError(exc.message.replace(repr(path.name), repr(file))) from None
    kind = "a single .npy array" if head.startswith(b"\x93NUMPY") else "not a known format"
    raise DataFormatError(
        f"{file!r} is {kind}; upload an .npz (np.savez(path, x=..., labels=...)) or a "
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
        log.info("array names of %s unreadable: %r", path, exc)
        raise CorruptFileError(f"{path.name!r}: its array names cannot be read") from None


def _read_npz(path: Path, file: str, max_bytes: int) -> dict[str, torch.Tensor]:
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
                    log.info("array %r of %s unreadable: %r", key, path, exc)
                    raise CorruptFileError(
                        f"{file!r}: array {key!r} is damaged (its data does not match its "
                        ".npy header); save the file again with np.savez"
                    ) from None
                out[key] = _from_numpy(file, key, arr)
        return out
    except _ZIP_ERRORS as exc:
        log.info("npz %s unreadable: %r", path, exc)
        raise CorruptFileError(
            f"{file!r} is a damaged or truncated .npz (a member's data does not match the zip "
            "directory); save it again with np.savez and upload the complete file"
        ) from None


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
    odd = [i.filename for i in infos if i.compress_type not in _COMPRESSIONS]
    if odd:
        raise DataFormatError(
            f"{file!r} compresses {odd[:5]} with a method np.savez does not use; save the "
            "file with np.savez or np.savez_compressed"
        )
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise DataTooLargeError(
            f"{file!r} unpacks to {total} bytes; the limit is {max_bytes} bytes. Upload fewer "
            "samples"
        )
    for i in infos:
        ratio = i.file_size / max(i.compress_size, 1)
        if i.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
            raise DataTooLargeError(
                f"{file!r}: array {i.filename.removesuffix('.npy')!r} expands {ratio:.0f}x "
                f"({i.compress_size} -> {i.file_size} bytes); the limit is {MAX_RATIO:.0f}x "
                f"for members over {RATIO_FLOOR} bytes. Upload real samples, not padding"
            )


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
        except (ValueError, SyntaxError, TypeError) as exc:
            log.info("npy header of %r in %s unreadable: %r", key, file, exc)
            raise CorruptFileError(
                f"{file!r}: array {key!r} has a damaged .npy header; save the file again with "
                "np.savez"
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
