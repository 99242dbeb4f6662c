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
  -- so its pickle may only reference the globals a plain tensor needs. Only
  that pickle (``data.pkl``) is read, through a bounded window on the nested
  zip, so large sample tensors cost nothing; an empty member (no sample
  inputs) passes;
- ``expr_str`` strings in ``models/*.json``: passed to ``sympy.sympify``
  (which evaluates). Each must sit in a plain ``SymExpr`` (an integer or
  boolean hint) and parse in the integer shape grammar of
  :mod:`engine.io.importers._sym_expr`, which is what torch writes for
  ``dynamic_shapes`` (``Mul(Integer(2), Symbol('s77', positive=True,
  integer=True))``); ``range_constraints`` may hold only integer or null bounds;
- ``guards_code`` in ``models/*.json``: Python source that
  ``ExportedProgram.module()`` (and ``run_decompositions()``) runs with ``exec``
  when the program has example inputs; each entry must parse in the guard grammar of the
  same module (:func:`import_pt2` also gives the sandbox a copy without example
  inputs, so guards never run there);
- ``data/aotinductor/`` (native ``.so`` loaded with ``dlopen``) and the
  pre-2.8 archive layout (its own unsafe-retry path): not on the allow-list.

Size: one file (over 300 lines) because the screen is one allow-list: the member
names, the JSON checks and the bounded pickle-opcode reads of the sample inputs
share the limits above, and a reviewer checks them together against what
``torch.export.load`` would otherwise run.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from engine.errors import CorruptFileError, UnsafeArchiveError
from engine.io.importers._sniff import ArchiveLimits, check_zip_limits
from engine.io.importers._sym_expr import check_guard, check_sym_expr

__all__ = ["screen_pt2"]

_MEMBERS = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json"
    r"|data/weights/[\w.-]+_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/[\w.-]+_constants_config\.json|data/constants/tensor_\d+"
    r"|data/sample_inputs/[\w.-]+\.pt)",
    re.ASCII,  # \d and \w match only ASCII digits and letters, as torch writes them
)
_SAMPLE_MEMBERS = re.compile(
    r"(data\.pkl|\.format_version|\.storage_alignment|byteorder|version|data/\d+"
    r"|\.data/serialization_id)",
    re.ASCII,
)
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
_TENSOR_GLOBALS = frozenset(
    {("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict")}
    | {("torch", f"{t}Storage") for t in _STORAGES}
)
"""Globals a ``torch.save`` of plain tensors in tuples/dicts references (protocol 2)."""
_MAX_JSON = 16 * 1024 * 1024
"""Largest JSON member, refused by its declared size before it is read."""
_MAX_JSON_VALUES = 1 << 20
"""Most JSON values (counted by their separators) in one member, checked before it is
parsed: each becomes a Python object of 30 to 200 bytes (a 64 MiB member of ``[]`` would
take over a gigabyte). A BERT-base export has ~100,000."""
_MAX_PICKLE = 16 * 1024 * 1024
_MAX_NESTED_READ = 4 * 1024 * 1024
"""Largest single read from a nested sample-inputs zip (its directory, a pickle chunk)."""
_MAX_NESTED_MEMBERS = 10_000
_MAX_EXPR_TEXT = 2 * 1024 * 1024
"""Total characters of distinct shape strings per archive (real exports: a few KiB)."""
_MAX_BOUND = 2**64


def screen_pt2(path: Path, archive_limits: ArchiveLimits = ArchiveLimits()) -> None:
    """Raise unless ``path`` is a plain torch.export archive within ``archive_limits``.

    Raises:
        ArchiveLimitError: too many members, too large, or a zip-bomb ratio.
        CorruptFileError: a damaged zip or unreadable JSON member.
        UnsafeArchiveError: any member, field, shape string or pickle opcode outside the
            allow-list.
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
    shape_strings = _ShapeStrings()
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
                doc = _read_json(zf, info, path)
                if tail.startswith("data/"):
                    _screen_payload_config(tail, doc)
                else:
                    _screen_program(tail, doc, shape_strings)
            elif tail.startswith("data/sample_inputs/"):
                with _nested_zip(path, zf, info) as nested:
                    _screen_sample_inputs(tail, nested)


def _screen_payload_config(member: str, doc: Any) -> None:
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


def _screen_program(member: str, doc: Any, shape_strings: _ShapeStrings) -> None:
    """Check every shape string, range and hint of a serialized ExportedProgram."""
    if not isinstance(doc, dict):
        raise UnsafeArchiveError(f"{member!r} is not a serialized ExportedProgram")
    for sym_expr in _sym_exprs(doc):
        shape_strings.check(member, sym_expr.get("expr_str"), check_sym_expr)
        hint = sym_expr.get("hint")
        if set(sym_expr) - {"expr_str", "hint"} or not (hint is None or _is_hint(hint)):
            raise UnsafeArchiveError(
                f"{member!r} has a symbolic shape {_short(sym_expr)} with fields or a hint "
                "torch.export does not write for integer shapes"
            )
    ranges = doc.get("range_constraints", {})
    if not isinstance(ranges, dict):
        raise UnsafeArchiveError(f"{member!r} has malformed range_constraints")
    for name, bounds in ranges.items():
        shape_strings.check(member, name, check_sym_expr)
        if not (
            isinstance(bounds, dict)
            and set(bounds) <= {"min_val", "max_val"}
            and all(v is None or _is_int(v) for v in bounds.values())
        ):
            raise UnsafeArchiveError(
                f"{member!r} bounds symbol {name[:80]!r} by {_short(bounds)}; only integer "
                "or null bounds are accepted"
            )
    guards = doc.get("guards_code", [])
    if not isinstance(guards, list):
        raise UnsafeArchiveError(f"{member!r} has malformed guards_code")
    for guard in guards:
        shape_strings.check(member, guard, check_guard)


class _ShapeStrings:
    """Checks each shape string once per grammar, within :data:`_MAX_EXPR_TEXT` characters."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.chars = 0

    def check(self, member: str, value: Any, grammar: Callable[[str], None]) -> None:
        if isinstance(value, str) and (grammar.__name__, value) in self.seen:
            return
        try:
            grammar(value)
        except UnsafeArchiveError as exc:
            raise UnsafeArchiveError(
                f"{member!r} contains the symbolic shape string {_short(value)}, which is not "
                f"integer shape arithmetic as torch.export writes it ({exc.message}). "
                "torch.export.load evaluates these strings, so MPQ accepts only that grammar "
                "(see engine/io/importers/_sym_expr.py); export with integer-only dynamic shapes "
                "or without dynamic_shapes."
            ) from None
        self.seen.add((grammar.__name__, value))
        self.chars += len(value)
        if self.chars > _MAX_EXPR_TEXT:
            raise UnsafeArchiveError(
                f"{member!r} holds more than {_MAX_EXPR_TEXT} characters of distinct symbolic "
                "shape strings; real exports hold a few thousand"
            )


def _sym_exprs(doc: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every dict that holds an ``expr_str`` key (a serialized ``SymExpr``), anywhere."""
    if depth > 200:
        raise UnsafeArchiveError("a JSON member of the archive is nested implausibly deep")
    if isinstance(doc, dict):
        if "expr_str" in doc:
            yield doc
        for v in doc.values():
            yield from _sym_exprs(v, depth + 1)
    elif isinstance(doc, list):
        for v in doc:
            yield from _sym_exprs(v, depth + 1)


def _is_int(value: Any) -> bool:
    return type(value) is int and -_MAX_BOUND < value < _MAX_BOUND


def _is_hint(hint: Any) -> bool:
    if not (isinstance(hint, dict) and len(hint) == 1):
        return False
    ((kind, value),) = hint.items()
    return (kind == "as_int" and _is_int(value)) or (kind == "as_bool" and type(value) is bool)


def _short(value: Any) -> str:
    return repr(value)[:80]


def _screen_sample_inputs(member: str, nested: _Window) -> None:
    if nested.seek(0, os.SEEK_END) == 0:
        return  # torch.export.save writes an empty member when there are no example inputs
    try:
        with zipfile.ZipFile(nested) as inner:
            infos = inner.infolist()
            tails = [i.filename.split("/", 1)[-1] for i in infos]
            bad = [t for t in tails if not _SAMPLE_MEMBERS.fullmatch(t)]
            pickles = [i for i in infos if i.filename.endswith("data.pkl")]
            if bad or len(pickles) != 1 or len(infos) > _MAX_NESTED_MEMBERS:
                raise UnsafeArchiveError(f"{member!r} is not a plain torch.save of tensors")
            pickle_bytes = _read_small(inner, pickles[0], _MAX_PICKLE)
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


def _nested_zip(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Window:
    """A bounded, seekable view of a member that is itself a zip, without reading it whole.

    ``torch.export.save`` stores members uncompressed: the view is then a window on
    the archive file (its data starts after the local header). A compressed member
    is read whole, as before, up to the pickle cap.
    """
    if info.compress_type != zipfile.ZIP_STORED:
        return _Window(io.BytesIO(_read_small(zf, info, _MAX_PICKLE)), 0, info.file_size)
    f = open(path, "rb")  # noqa: SIM115 -- owned and closed by the window
    try:
        f.seek(info.header_offset)
        header = f.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise CorruptFileError(f"member {info.filename!r} has a damaged local header")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_len + extra_len
        if info.compress_size != info.file_size or start + info.file_size > f.seek(0, 2):
            raise CorruptFileError(f"member {info.filename!r} runs past the end of the archive")
    except BaseException:
        f.close()
        raise
    return _Window(f, start, info.file_size)


class _Window(io.RawIOBase):
    """Read-only view of ``size`` bytes of ``f`` from ``start``; one read is at most 4 MiB.

    The cap bounds what :mod:`zipfile` may allocate for a nested directory whose
    header claims gigabytes; the pickle is read in chunks below it.
    """

    def __init__(self, f: IO[bytes], start: int, size: int) -> None:
        super().__init__()
        self._f, self._start, self._size, self._pos = f, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the member")
        self._pos = base + offset
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        left = max(self._size - self._pos, 0)
        n = left if n is None or n < 0 else min(n, left)
        if n > _MAX_NESTED_READ:
            raise UnsafeArchiveError(
                f"a nested sample-inputs archive asks for a {n}-byte read (a directory or "
                "pickle far larger than torch.save writes)"
            )
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._f.close()
        super().close()


def _read_json(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Any:
    """A JSON member, after its declared size and its count of values are checked."""
    raw = _read_small(zf, info, _MAX_JSON)
    values = sum(raw.count(c) for c in (b",", b"[", b"{", b":"))
    if values > _MAX_JSON_VALUES:
        raise UnsafeArchiveError(
            f"member {info.filename!r} of {path.name!r} holds about {values} JSON values; "
            f"the limit is {_MAX_JSON_VALUES} (real exports hold far fewer)"
        )
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise CorruptFileError(
            f"member {info.filename!r} of {path.name!r} is not readable JSON"
        ) from None


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """The member's bytes, read in 1 MiB chunks, refusing more than ``limit``."""
    if info.file_size > limit:
        raise UnsafeArchiveError(
            f"member {info.filename!r} declares {info.file_size} bytes; the limit for this "
            f"member is {limit} bytes (real exports are far smaller)"
        )
    chunks, total = [], 0
    try:
        with zf.open(info) as f:
            while total <= limit and (chunk := f.read(min(1 << 20, limit + 1 - total))):
                chunks.append(chunk)
                total += len(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error):
        raise CorruptFileError(
            f"member {info.filename!r} cannot be read (damaged or truncated); save the model "
            "again and re-upload the complete file"
        ) from None
    if total > limit:
        raise UnsafeArchiveError(f"member {info.filename!r} is larger than its header says")
    return b"".join(chunks)
