"""Import a ``torch.export`` archive (``.pt2``) into IR, safely.

Two guards, because ``torch.export.load`` can run code from the file:

1. a static screen in this process, reading only the zip directory and JSON
   members: archive limits (zip bombs) and the archive features known to make
   ``torch.export.load`` execute code (:func:`screen_pt2`);
2. the load itself runs in :mod:`engine.io._sandbox` (no network, read-only
   filesystem, resource limits) on a copy of the archive whose sample inputs
   are empty: MPQ does not need them, so the sandbox never unpickles them nor
   holds their (possibly large) tensors, and without example inputs
   ``ExportedProgram.module()`` does not ``exec`` the archive's ``guards_code``.
   The child sends back an IR file, which this process validates like any
   other untrusted input.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from engine.errors import (
    CorruptFileError,
    ImportFailedError,
    InvalidIRError,
    MPQError,
    TrainingModeError,
    UnsupportedOpsError,
)
from engine.io._sandbox import Limits, run_isolated
from engine.io.importers._pt2_child import ERROR_FILE, IR_FILE
from engine.io.importers._pt2_screen import screen_pt2
from engine.io.importers._sniff import ArchiveLimits
from engine.ir import IRModel, load_ir

__all__ = ["import_pt2"]

log = logging.getLogger(__name__)

_CHILD_ERRORS: dict[str, type[MPQError]] = {
    cls.code: cls for cls in (TrainingModeError, UnsupportedOpsError, InvalidIRError)
}
"""Error codes the child may report; anything else becomes ImportFailedError."""


def import_pt2(
    path: Path,
    *,
    archive_limits: ArchiveLimits = ArchiveLimits(),
    limits: Limits = Limits(),
    trust_uploads: bool = False,
) -> IRModel:
    """Screen, load in isolation, and return the validated IR of a .pt2 archive.

    Raises:
        ArchiveLimitError, CorruptFileError, UnsafeArchiveError: from the screen (a
            damaged member found while copying the archive for the sandbox is a
            CorruptFileError too).
        SandboxUnavailableError: no isolation here and ``trust_uploads`` is False.
        TrainingModeError, UnsupportedOpsError: the program cannot become IR.
        ImportFailedError: the isolated loader failed, crashed or timed out.
    """
    path = Path(path)
    screen_pt2(path, archive_limits)
    with tempfile.TemporaryDirectory(prefix="mpq-import-") as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        (Path(tmp) / "in").mkdir()
        result = run_isolated(
            "engine.io.importers._pt2_child",
            [],
            input_file=_without_sample_inputs(path, Path(tmp) / "in" / path.name),
            out_dir=out,
            limits=limits,
            trust_uploads=trust_uploads,
        )
        if (out / ERROR_FILE).is_file():
            raise _child_error(out / ERROR_FILE, path, limits)
        if result.returncode != 0 or not (out / IR_FILE).is_file():
            log.warning(
                "isolated import of %s exited with status %s: %s",
                path.name,
                result.returncode,
                result.stderr[-2000:],
            )
            raise ImportFailedError(
                f"the isolated importer stopped without reading {path.name!r} (exit status "
                f"{result.returncode}). The file may be damaged or exceed the importer's "
                f"limits ({_limits_text(limits)})."
            )
        return load_ir(out / IR_FILE)


def _limits_text(limits: Limits) -> str:
    mib = limits.memory_bytes >> 20
    memory = f"{mib >> 10} GiB" if mib % 1024 == 0 else f"{mib} MiB"
    return f"{memory} of memory, {limits.timeout_s:.0f} s"


def _without_sample_inputs(src: Path, dst: Path) -> Path:
    """Copy the archive ``src`` to ``dst`` with every ``data/sample_inputs/*`` member empty.

    An empty member is what ``torch.export.save`` writes for a program without
    example inputs; ``torch.export.load`` then sets ``example_inputs = None``
    (a missing member would fail the load). Other members are streamed in
    1 MiB chunks (their CRCs checked), stored uncompressed, in their original
    order. Call only on a screened archive (its sizes are bounded by the archive
    limits).

    Raises:
        CorruptFileError: a member's data is damaged (bad CRC, truncated, bad deflate).
    """
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            if info.filename.split("/", 1)[-1].startswith("data/sample_inputs/"):
                zout.writestr(copy, b"")
                continue
            copy.file_size = info.file_size  # lets zipfile choose zip64 for large members
            try:
                with zin.open(info) as fin, zout.open(copy, "w") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            except (zipfile.BadZipFile, EOFError, zlib.error):
                raise CorruptFileError(
                    f"member {info.filename!r} of {src.name!r} is damaged (bad checksum or "
                    "truncated data). Save the model again and re-upload the complete file."
                ) from None
    return dst


def _child_error(error_file: Path, path: Path, limits: Limits) -> MPQError:
    """The child's error in MPQ's words: its own codes pass through, torch's text is logged."""
    try:
        data = json.loads(error_file.read_text()[:10_000])
        code, message = str(data["code"]), str(data["message"])[:2000]
        reason = str(data.get("reason", ""))
    except (ValueError, KeyError, TypeError, OSError, AttributeError):
        return ImportFailedError(f"the isolated importer failed on {path.name!r}")
    cls = _CHILD_ERRORS.get(code)
    if cls is not None:
        return cls(message)
    log.warning("isolated import of %s failed (%s): %s", path.name, reason, message)
    if reason == "memory":
        return ImportFailedError(
            f"loading {path.name!r} needed more memory than the importer's limit "
            f"({_limits_text(limits)}); upload a smaller model"
        )
    return ImportFailedError(
        f"torch.export.load could not load {path.name!r}: the archive is damaged or was "
        "written by an incompatible torch version. Export it again with torch.export.save "
        "(or upload an ONNX export)."
    )
