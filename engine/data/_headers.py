"""Bounded reads of a data file's headers: what it declares, checked before any data is read.

- :func:`json_depth_at_most`: whether JSON text nests at most ``levels`` deep, found with
  a few linear regex passes over the bytes (no recursion, no objects built), so that a
  header nested 100,000 deep is refused before :func:`json.loads` would recurse into it.
- :func:`check_safetensors_header`: the header of a safetensors file (8-byte length,
  JSON), read alone and checked against the file's real size and a byte limit: the
  length is capped, the JSON is at most :data:`SAFETENSORS_DEPTH` levels deep, every
  entry's dtype, shape and ``data_offsets`` are well-formed and inside the file, and the
  declared bytes are within the limit.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

from engine.errors import CorruptFileError, DataFormatError, DataTooLargeError

__all__ = [
    "MAX_HEADER_BYTES",
    "SAFETENSORS_DEPTH",
    "check_safetensors_header",
    "json_depth_at_most",
]

MAX_HEADER_BYTES = 16 * 1024 * 1024
"""Largest safetensors header accepted in a data file (a 1,024-array header is ~100 KiB)."""
SAFETENSORS_DEPTH = 4
"""Deepest nesting of a data file's safetensors header: ``{name: {"shape": [...]}}`` is 3."""

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(rb"\{\}|\[\]")
_ITEM_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def json_depth_at_most(raw: bytes, levels: int) -> bool:
    """True if the JSON text ``raw`` nests objects and arrays at most ``levels`` deep.

    Escapes (``\\x``) and then strings are removed, leaving the brackets; each pass
    deletes the innermost empty pairs, so ``levels`` passes clear a well-nested text of
    that depth. Anything left is deeper (or unbalanced, which the JSON parser would
    refuse anyway). Cost: ``levels + 3`` linear passes; memory: copies of ``raw``.
    """
    bare = _NOT_BRACKET.sub(b"", _STRING.sub(b"", _ESCAPE.sub(b"", raw)))
    for _ in range(levels):
        if not bare:
            return True
        bare = _EMPTY_PAIR.sub(b"", bare)
    return not bare


def check_safetensors_header(path: Path, *, max_bytes: int, name: str) -> int:
    """Check the safetensors header of the data file ``path``; return its declared bytes.

    Only the header is read. ``name`` is how messages call the file (the name the user
    gave it).

    Raises:
        CorruptFileError: the header's length, JSON or an entry is malformed, or an
            entry's bytes lie outside the file.
        DataFormatError: the header nests deeper than :data:`SAFETENSORS_DEPTH` levels.
        DataTooLargeError: the tensors declare more than ``max_bytes`` bytes.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise CorruptFileError(
                f"{name!r} declares a {n}-byte safetensors header, but the file has {size} "
                f"bytes and headers may have at most {MAX_HEADER_BYTES}; save it again with "
                "safetensors.numpy.save_file"
            )
        raw = f.read(n)
    if not json_depth_at_most(raw, SAFETENSORS_DEPTH):
        raise DataFormatError(
            f"{name!r} has a safetensors header nested deeper than {SAFETENSORS_DEPTH} levels; "
            "a data file's header maps each array name to its dtype, shape and offsets"
        )
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict):
        raise CorruptFileError(
            f"{name!r} has a safetensors header that is not a JSON object; save it again with "
            "safetensors.numpy.save_file"
        )
    body = size - 8 - n
    total = 0
    for key, entry in header.items():
        if key != "__metadata__":
            total += _entry_bytes(name, key, entry, body)
    if total > max_bytes:
        raise DataTooLargeError(
            f"{name!r} declares {total} bytes of arrays; the limit is {max_bytes} bytes. "
            "Upload fewer samples"
        )
    return total


def _entry_bytes(name: str, key: str, entry: object, body: int) -> int:
    """The bytes one header entry declares, after checking them against the data region."""
    if not isinstance(entry, dict):
        raise CorruptFileError(f"{name!r}: array {key!r} has a malformed safetensors entry")
    code, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and all(_is_count(d) for d in shape)):
        raise CorruptFileError(f"{name!r}: array {key!r} has an invalid shape {str(shape)[:80]}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise CorruptFileError(f"{name!r}: array {key!r} has invalid data_offsets")
    if code not in _ITEM_SIZES:
        raise CorruptFileError(f"{name!r}: array {key!r} has unsupported dtype {str(code)[:20]!r}")
    nbytes = math.prod(shape) * _ITEM_SIZES[str(code)]
    begin, stop = offsets
    if not begin <= stop <= body or stop - begin != nbytes:
        raise CorruptFileError(
            f"{name!r}: array {key!r} ({code}, shape {shape}) needs {nbytes} bytes, but its "
            f"data_offsets span {stop - begin} bytes of a {body}-byte data region; the file "
            "is damaged or truncated"
        )
    return nbytes


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63
