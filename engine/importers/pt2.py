"""Import a ``torch.export`` archive (``.pt2``) into IR, safely.

Two guards, because ``torch.export.load`` can run code from the file:

1. a static screen in this process, reading only the zip directory and JSON
   members: archive limits (zip bombs) and the archive features known to make
   ``torch.export.load`` execute code (:func:`screen_pt2`);
2. the load itself runs in :mod:`engine.sandbox` (no network, read-only
   filesystem, resource limits); the child sends back an IR file, which this
   process validates like any other untrusted input.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from engine.errors import (
    ImportFailedError,
    InvalidIRError,
    MPQError,
    TrainingModeError,
    UnsupportedOpsError,
)
from engine.importers._pt2_child import ERROR_FILE, IR_FILE
from engine.importers._pt2_screen import screen_pt2
from engine.importers._sniff import ArchiveLimits
from engine.ir import IRModel, load_ir
from engine.sandbox import Limits, run_isolated

__all__ = ["import_pt2"]

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
        ArchiveLimitError, CorruptFileError, UnsafeArchiveError: from the screen.
        SandboxUnavailableError: no isolation here and ``trust_uploads`` is False.
        TrainingModeError, UnsupportedOpsError: the program cannot become IR.
        ImportFailedError: the isolated loader failed, crashed or timed out.
    """
    path = Path(path)
    screen_pt2(path, archive_limits)
    with tempfile.TemporaryDirectory(prefix="mpq-import-") as tmp:
        out = Path(tmp)
        result = run_isolated(
            "engine.importers._pt2_child",
            [],
            input_file=path,
            out_dir=out,
            limits=limits,
            trust_uploads=trust_uploads,
        )
        if (out / ERROR_FILE).is_file():
            raise _child_error(out / ERROR_FILE, path)
        if result.returncode != 0 or not (out / IR_FILE).is_file():
            last = result.stderr.strip().splitlines()[-1:] or ["no output"]
            raise ImportFailedError(
                f"the isolated importer exited with status {result.returncode} on "
                f"{path.name!r} ({last[0][:300]}). The file may be damaged or exceed the "
                f"importer's limits ({limits.memory_bytes // 2**30} GiB memory, "
                f"{limits.timeout_s:.0f} s)."
            )
        return load_ir(out / IR_FILE)


def _child_error(error_file: Path, path: Path) -> MPQError:
    try:
        data = json.loads(error_file.read_text()[:10_000])
        code, message = str(data["code"]), str(data["message"])[:2000]
    except (ValueError, KeyError, TypeError, OSError):
        return ImportFailedError(f"the isolated importer failed on {path.name!r}")
    cls = _CHILD_ERRORS.get(code)
    if cls is None:
        return ImportFailedError(f"could not load {path.name!r}: {message}")
    return cls(message)
