"""A reader and writer for the safetensors file format, in the standard library.

Layout (https://github.com/huggingface/safetensors): an 8-byte little-endian
unsigned header length ``n``; ``n`` bytes of UTF-8 JSON mapping each tensor
name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to
the end of the header) plus an optional ``"__metadata__"`` map of str -> str;
then the tensor bytes, little-endian, C order, packed without gaps.

Reading trusts nothing: the header size is capped, every offset is checked to
lie inside the file, tensors must tile the data region exactly, and
``prod(shape) * itemsize`` must equal the byte span. No code from the file runs.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from engine.errors import CorruptFileError

__all__ = ["DTYPES", "read_safetensors", "write_safetensors"]

MAX_HEADER_BYTES = 64 * 1024 * 1024

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_CODES = {v: k for k, v in DTYPES.items()}


def write_safetensors(
    path: Path, tensors: Mapping[str, torch.Tensor], *, metadata: Mapping[str, str] | None = None
) -> int:
    """Write ``tensors`` (sorted by name) and ``metadata``; return the file size in bytes.

    The header is padded with spaces to a multiple of 8 bytes, as the reference
    implementation does, so tensor data stays aligned.
    """
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _CODES:
            raise ValueError(f"tensor {name!r} has dtype {t.dtype}, not storable in safetensors")
        raw = _tensor_bytes(t)
        header[name] = {
            "dtype": _CODES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for raw in blobs:
            f.write(raw)
    return 8 + len(head) + offset


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file into ``(tensors, metadata)``, validating every field.

    Raises:
        CorruptFileError: the file is truncated, its header is not valid JSON of
            the expected shape, or a tensor's offsets/shape/dtype are inconsistent.
    """
    data = Path(path).read_bytes()
    where = f"safetensors file {Path(path).name!r}"
    if len(data) < 8:
        raise CorruptFileError(f"{where} is {len(data)} bytes: too short to hold a header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise CorruptFileError(f"{where} declares a {n}-byte header; the file has {len(data)}")
    try:
        header = json.loads(data[8 : 8 + n].decode())
    except RecursionError:  # nested past the parser's stack: no real header does that
        raise CorruptFileError(
            f"{where} has a header nested too deep to be a tensor index"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{where} has a header that is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise CorruptFileError(f"{where} header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise CorruptFileError(f"{where} __metadata__ must map strings to strings")
    body = memoryview(data)[8 + n :]
    spans: list[tuple[int, int]] = []
    tensors: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        tensors[name] = _decode_entry(where, name, entry, body)
        spans.append((entry["data_offsets"][0], entry["data_offsets"][1]))
    spans.sort()
    end = 0
    for begin, stop in spans:
        if begin != end:
            raise CorruptFileError(f"{where}: tensor data has a gap or overlap at byte {begin}")
        end = stop
    if end != len(body):
        raise CorruptFileError(f"{where}: {len(body) - end} trailing bytes after the tensor data")
    return tensors, metadata


def _decode_entry(where: str, name: str, entry: object, body: memoryview) -> torch.Tensor:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise CorruptFileError(f"{where}: entry {name!r} must have dtype, shape, data_offsets")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in DTYPES:
        raise CorruptFileError(f"{where}: tensor {name!r} has unsupported dtype {code!r}")
    if not (isinstance(shape, list) and all(_is_nonneg_int(d) for d in shape)):
        raise CorruptFileError(f"{where}: tensor {name!r} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_nonneg_int, offsets))):
        raise CorruptFileError(f"{where}: tensor {name!r} has invalid data_offsets {offsets!r}")
    begin, stop = offsets
    dtype = DTYPES[code]
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if not begin <= stop <= len(body) or stop - begin != nbytes:
        raise CorruptFileError(
            f"{where}: tensor {name!r} ({code}, shape {shape}) needs {nbytes} bytes "
            f"but data_offsets {offsets} span {stop - begin} of a {len(body)}-byte body"
        )
    raw = bytes(body[begin:stop])
    if dtype == torch.bfloat16:
        words = np.frombuffer(raw, dtype="<u2").astype(np.int16)
        return torch.from_numpy(words.copy()).view(torch.bfloat16).reshape(shape)
    if dtype == torch.bool:
        arr = np.frombuffer(raw, dtype=np.uint8)
        if arr.size and arr.max() > 1:
            raise CorruptFileError(f"{where}: bool tensor {name!r} holds a byte other than 0/1")
        return torch.from_numpy(arr.astype(np.bool_)).reshape(shape)
    np_dtype = torch.empty((), dtype=dtype).numpy().dtype.newbyteorder("<")
    return torch.from_numpy(np.frombuffer(raw, dtype=np_dtype).copy()).reshape(shape)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def _is_nonneg_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
