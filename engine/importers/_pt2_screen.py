"""Static screen of a ``.pt2`` archive: refuse what would make ``torch.export.load`` run code.

Reads only the zip directory, small JSON members and pickle *opcodes*
(:func:`pickletools.genops` decodes without executing). It is an allow-list:
an archive passes only if it looks exactly like what ``torch.export.save``
writes for a plain model. Known code-execution paths in torch 2.13's loader,
each refused here (and contained by the sandbox should the screen miss one):

- ``use_pickle: true`` in ``data/{weights,constants}/*_config.json``:
  ``torch.load(weights_only=False)`` of that payload;
- constants whose ``path_name`` is ``opaque_obj_*`` / ``custom_obj_*``:
  ``pickle.loads`` or the TorchScript unpickler;
- ``data/sample_inputs/*.pt`` (a nested ``torch.save`` zip): if the safe
  ``weights_only=True`` load fails, torch retries with ``weights_only=False``
  -- so its pickle may only reference the globals a plain tensor needs;
- ``expr_str`` strings in ``models/*.json``: passed to ``sympy.sympify``
  (which evaluates); only integer literals pass (MPQ takes static shapes);
- ``data/aotinductor/`` (native ``.so`` loaded with ``dlopen``) and the
  pre-2.8 archive layout (its own unsafe-retry path): not on the allow-list.
"""

from __future__ import annotations

import io
import json
import pickletools
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import CorruptFileError, UnsafeArchiveError
from engine.importers._sniff import ArchiveLimits, check_zip_limits

__all__ = ["screen_pt2"]

_MEMBERS = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json"
    r"|data/weights/[\w.-]+_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/[\w.-]+_constants_config\.json|data/constants/tensor_\d+"
    r"|data/sample_inputs/[\w.-]+\.pt)"
)
_SAMPLE_MEMBERS = re.compile(
    r"(data\.pkl|\.format_version|\.storage_alignment|byteorder|version|data/\d+"
    r"|\.data/serialization_id)"
)
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
_TENSOR_GLOBALS = frozenset(
    {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict")}
    | {("torch", f"{t}Storage") for t in _STORAGES}
)
"""Globals a ``torch.save`` of plain tensors in tuples/dicts references (protocol 2)."""
_MAX_JSON = 64 * 1024 * 1024
_MAX_PICKLE = 16 * 1024 * 1024


def screen_pt2(path: Path, archive_limits: ArchiveLimits = ArchiveLimits()) -> None:
    """Raise unless ``path`` is a plain torch.export archive within ``archive_limits``.

    Raises:
        ArchiveLimitError: too many members, too large, or a zip-bomb ratio.
        CorruptFileError: a damaged zip or unreadable JSON member.
        UnsafeArchiveError: any member, field or pickle opcode outside the allow-list.
    """
    path = Path(path)
    infos = check_zip_limits(path, archive_limits)
    names = [i.filename for i in infos]
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or len(set(names)) != len(names) or any("/" not in n for n in names):
        raise UnsafeArchiveError(
            f"{path.name!r} is not laid out as torch.export.save writes archives (one root "
            "folder, no duplicate members); re-save it with torch.export.save"
        )
    with zipfile.ZipFile(path) as zf:
        for info in infos:
            tail = info.filename.split("/", 1)[1]
            if not _MEMBERS.fullmatch(tail):
                raise UnsafeArchiveError(
                    f"{path.name!r} contains {tail!r}, which a plain torch.export archive does "
                    "not have (compiled AOTInductor code, a legacy format, or a crafted file). "
                    "Re-export with torch.export.export + torch.export.save."
                )
            if tail == "archive_version" and zf.read(info).strip() != b"0":
                raise UnsafeArchiveError(f"{path.name!r} has an unknown archive_version")
            if tail.endswith(".json"):
                _screen_json(tail, _read_json(zf, info, path))
            elif tail.startswith("data/sample_inputs/"):
                _screen_sample_inputs(tail, _read_small(zf, info, _MAX_PICKLE))


def _screen_json(member: str, doc: Any) -> None:
    if member.startswith("data/"):
        entries = doc.get("config") if isinstance(doc, dict) else None
        if not isinstance(entries, dict):
            raise UnsafeArchiveError(f"{member!r} has no 'config' object")
        for fqn, meta in entries.items():
            if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                raise UnsafeArchiveError(
                    f"{member!r} stores {fqn!r} as a pickle (use_pickle), which torch.export.load "
                    "unpickles with weights_only=False; MPQ accepts plain tensor payloads only"
                )
            path_name = meta.get("path_name")
            if "constants" in member and not (
                isinstance(path_name, str) and path_name.startswith("tensor_")
            ):
                raise UnsafeArchiveError(
                    f"{member!r} holds constant {fqn!r} as {path_name!r} (an opaque or custom "
                    "object, loaded with pickle); MPQ accepts tensor constants only"
                )
        return
    for value in _expr_strings(doc):
        if not re.fullmatch(r"-?\d{1,30}", value.strip()):
            raise UnsafeArchiveError(
                f"{member!r} contains the symbolic shape expression {value[:80]!r}; torch.export"
                ".load evaluates these, and MPQ takes static shapes only. Export without "
                "dynamic_shapes."
            )


def _expr_strings(doc: Any, depth: int = 0) -> Iterator[str]:
    if depth > 200:
        raise UnsafeArchiveError("a JSON member of the archive is nested implausibly deep")
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "expr_str":
                yield v if isinstance(v, str) else repr(v)
            else:
                yield from _expr_strings(v, depth + 1)
    elif isinstance(doc, list):
        for v in doc:
            yield from _expr_strings(v, depth + 1)


def _screen_sample_inputs(member: str, data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            tails = [n.split("/", 1)[-1] for n in inner.namelist()]
            bad = [t for t in tails if not _SAMPLE_MEMBERS.fullmatch(t)]
            pickles = [n for n in inner.namelist() if n.endswith("data.pkl")]
            if bad or len(pickles) != 1:
                raise UnsafeArchiveError(f"{member!r} is not a plain torch.save of tensors")
            info = inner.getinfo(pickles[0])
            pickle_bytes = _read_small(inner, info, _MAX_PICKLE)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise UnsafeArchiveError(
            f"{member!r} is not a readable torch.save archive; torch.export.load would retry "
            "it with an unsafe pickle load"
        ) from None
    try:
        ops = list(pickletools.genops(pickle_bytes))
    except Exception:
        raise UnsafeArchiveError(f"the pickle in {member!r} is malformed") from None
    for op, arg, _ in ops:
        if op.name in ("STACK_GLOBAL", "INST", "OBJ", "EXT1", "EXT2", "EXT4"):
            raise UnsafeArchiveError(f"the pickle in {member!r} uses opcode {op.name}")
        if op.name == "GLOBAL":
            module, _, name = str(arg).partition(" ")
            if (module, name) not in _TENSOR_GLOBALS:
                raise UnsafeArchiveError(
                    f"the sample-inputs pickle in {member!r} references {module}.{name}; "
                    "only plain tensors are accepted (torch.export.load would run it)"
                )


def _read_json(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Any:
    try:
        return json.loads(_read_small(zf, info, _MAX_JSON))
    except (ValueError, RecursionError) as exc:
        raise CorruptFileError(
            f"member {info.filename!r} of {path.name!r} is not readable JSON ({exc})"
        ) from None


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise UnsafeArchiveError(f"member {info.filename!r} is implausibly large")
    try:
        with zf.open(info) as f:
            data = f.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CorruptFileError(f"member {info.filename!r} cannot be read ({exc})") from None
    if len(data) > limit:
        raise UnsafeArchiveError(f"member {info.filename!r} is larger than its header says")
    return data
