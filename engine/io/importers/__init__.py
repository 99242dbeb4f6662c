"""Importers: turn uploaded model files (.pt2, .onnx) into MPQ IR.

:func:`import_model` recognises the file by its bytes (never by trusting its
name), refuses pickles, TorchScript and anything else with a specific error,
and dispatches to the .pt2 importer (isolated) or the ONNX importer (a
protobuf parse in this process; nothing in it can run code).
:func:`exported_program_to_ir` converts an ``ExportedProgram`` already in memory
(a trusted one: it runs in this process).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from engine.io._sandbox import Limits
from engine.io.importers._export_to_ir import exported_program_to_ir
from engine.io.importers._sniff import ArchiveLimits, ModelKind, sniff
from engine.io.importers.onnx import import_onnx
from engine.io.importers.pt2 import import_pt2
from engine.ir import IRModel, generalize_batch

__all__ = [
    "ArchiveLimits",
    "ImportedModel",
    "exported_program_to_ir",
    "import_model",
    "sha256_file",
]


@dataclass(frozen=True)
class ImportedModel:
    """An imported model: its IR, the source format, and the source file's sha256."""

    ir: IRModel
    kind: ModelKind
    sha256: str


def import_model(
    path: Path,
    *,
    archive_limits: ArchiveLimits = ArchiveLimits(),
    limits: Limits = Limits(),
    trust_uploads: bool = False,
) -> ImportedModel:
    """Import a .pt2 or .onnx file into validated IR.

    Whatever batch the model was exported with (fixed or dynamic), the IR runs at any
    batch when :func:`engine.ir.generalize_batch` can show it (``ir.batch``).

    Raises:
        MPQError: a subclass with a specific code for every way the file can be
            unacceptable (see :mod:`engine.errors`).
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "pt2":
        ir = import_pt2(
            path, archive_limits=archive_limits, limits=limits, trust_uploads=trust_uploads
        )
    else:
        ir = import_onnx(path, max_bytes=archive_limits.max_total_bytes)
    return ImportedModel(ir=generalize_batch(ir), kind=kind, sha256=sha256_file(path))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
