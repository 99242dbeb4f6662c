"""Recognise what an uploaded file is, from its bytes alone, and check archive limits.

Nothing here unpickles, imports or evaluates anything: zip archives are read
through their central directory only (:mod:`zipfile` parses it; no member is
extracted), other files by their first bytes.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.errors import (
    ArchiveLimitError,
    CorruptFileError,
    ModelFormatError,
    TorchSavePickleError,
    TorchScriptError,
)

__all__ = ["ArchiveLimits", "ModelKind", "check_zip_limits", "sniff"]

ModelKind = Literal["pt2", "onnx"]

_HINT = ModelFormatError.hint


@dataclass(frozen=True)
class ArchiveLimits:
    """Zip-bomb guards for archives (.pt2 files are zip archives)."""

    max_members: int = 10_000
    max_total_bytes: int = 8 * 1024**3
    max_ratio: float = 200.0
    """Largest allowed uncompressed/compressed ratio of a member over ``ratio_floor`` bytes."""
    ratio_floor: int = 1024 * 1024


def sniff(path: Path) -> ModelKind:
    """Say whether ``path`` is a torch.export archive or an ONNX file.

    Raises:
        TorchSavePickleError: a ``torch.save`` file (zip with ``data.pkl`` or a raw pickle).
        TorchScriptError: a ``torch.jit.save`` archive.
        CorruptFileError: empty, or a damaged zip.
        ModelFormatError: anything else.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise CorruptFileError(f"{path.name!r} is empty. {_HINT}")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _sniff_zip(path)
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        raise TorchSavePickleError(
            f"{path.name!r} is a Python pickle (legacy torch.save format). Pickles can run "
            f"arbitrary code when loaded, so MPQ never opens them. {_HINT}"
        )
    if head[0] == 0x08:  # ModelProto field 1 (ir_version), varint: how every ONNX file starts
        return "onnx"
    raise ModelFormatError(
        f"{path.name!r} is neither a torch.export archive (.pt2) nor an ONNX model. {_HINT}"
    )


def check_zip_limits(path: Path, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """Return the members of the zip at ``path`` after checking ``limits``.

    Declared sizes can lie; the isolated loader also runs under a file-size and
    memory limit, so this is the first of two guards.
    """
    path = Path(path)
    infos = _members(path)
    if len(infos) > limits.max_members:
        raise ArchiveLimitError(
            f"{path.name!r} has {len(infos)} members; the limit is {limits.max_members}"
        )
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        raise ArchiveLimitError(
            f"{path.name!r} unpacks to {total} bytes; the limit is {limits.max_total_bytes}"
        )
    for i in infos:
        ratio = i.file_size / max(i.compress_size, 1)
        if i.file_size > limits.ratio_floor and ratio > limits.max_ratio:
            raise ArchiveLimitError(
                f"member {i.filename!r} of {path.name!r} expands {ratio:.0f}x "
                f"({i.compress_size} -> {i.file_size} bytes); the limit is "
                f"{limits.max_ratio:.0f}x. This looks like a zip bomb."
            )
    return infos


def _members(path: Path) -> list[zipfile.ZipInfo]:
    """The zip's members, refusing archives whose directory does not describe the whole file.

    A truncated archive can still parse: :mod:`zipfile` looks for the directory
    record near the end of the file and may find that of a zip stored *inside*
    it (a .pt2 stores its sample inputs as a nested, uncompressed zip). The
    outer directory must start the file: its first member is at offset 0.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CorruptFileError(
            f"{path.name!r} is a damaged or truncated zip archive (its directory cannot be "
            "read). Save the model again and re-upload the complete file."
        ) from None
    if not infos or min(i.header_offset for i in infos) != 0:
        raise CorruptFileError(
            f"{path.name!r} is a truncated or damaged zip archive (its directory does not "
            "describe the whole file). Save the model again and re-upload the complete file."
        )
    return infos


def _sniff_zip(path: Path) -> ModelKind:
    names = [i.filename for i in _members(path)]
    tails = {n.split("/", 1)[-1] for n in names}
    if any(t.startswith("models/") and t.endswith(".json") for t in tails):
        return "pt2"
    if "constants.pkl" in tails or any(t.startswith("code/") for t in tails):
        raise TorchScriptError(
            f"{path.name!r} is a TorchScript archive (torch.jit.save). MPQ does not load "
            f"TorchScript. {_HINT}"
        )
    if "data.pkl" in tails:
        raise TorchSavePickleError(
            f"{path.name!r} is a torch.save checkpoint (a pickle inside a zip). Pickles can run "
            f"arbitrary code when loaded, so MPQ never opens them. {_HINT}"
        )
    raise ModelFormatError(
        f"{path.name!r} is a zip archive but not a torch.export archive "
        f"(no models/*.json member). {_HINT}"
    )
