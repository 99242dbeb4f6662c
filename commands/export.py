"""``mpq export MODEL_OR_MPQ --format onnx --out model.onnx [--opset N] [--json]``.

A packed artifact (``model.mpq``) is exported as QDQ ONNX from the file alone
(:func:`engine.io.export.export_artifact_onnx`); a float ``.pt2``/``.onnx`` model
is exported as it is (the fp32 baseline, :func:`engine.io.export.export_float_onnx`).
The file is written under a temporary name and renamed, so a failed export
leaves no partial ``model.onnx``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from engine.errors import FileMissingError
from service.settings import get_settings

__all__ = ["add_export_command"]


def add_export_command(subparsers: Any) -> None:
    """Register ``export`` on the ``mpq`` parser's subcommands (an argparse subparsers action)."""
    p = subparsers.add_parser("export", help="export a model.mpq (or a float model) to ONNX")
    p.add_argument("model", type=Path, help="a model.mpq artifact, or a float .pt2/.onnx model")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="the output format")
    p.add_argument("--out", type=Path, required=True, help="where to write model.onnx")
    p.add_argument("--opset", type=int, default=21, help="ONNX opset (21-23; default 21)")
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from engine.io.export import export_artifact_onnx, export_float_onnx
    from engine.io.importers import import_model

    path: Path = args.model
    if not path.is_file():
        raise FileMissingError(
            f"no such file: {str(path)!r}; give a model.mpq or a .pt2/.onnx model"
        )
    if _is_artifact(path):
        kind = "mpq"
        exported = export_artifact_onnx(path, opset=args.opset)
    else:
        imported = import_model(path, trust_uploads=get_settings().trust_uploads)
        kind = imported.kind
        exported = export_float_onnx(imported.ir, opset=args.opset)
    out: Path = args.out
    partial = out.with_name(out.name + ".partial")
    try:
        exported.save(partial)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    report = exported.report
    if args.json:
        doc = {"file": str(out), "source": str(path), "kind": kind, "format": args.format}
        print(json.dumps(doc | report.to_json(), indent=2))
        return 0
    print(f"wrote {out}: {report.file_bytes:,} bytes, opset {report.opset} (from {kind})")
    for r in report.layers:
        print(f"  {r.layer}: {r.format} -> {r.stored_as} ({r.nbytes:,} bytes)")
    if report.activations:
        acts = ", ".join(f"{n} x{k}" for k, n in report.activations.items())
        print(f"activations: Q/DQ as {acts}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


def _is_artifact(path: Path) -> bool:
    """True for a safetensors file whose header says ``format = mpq-artifact``."""
    with open(path, "rb") as f:
        head = f.read(8 + 4096)
    return len(head) > 8 and b'"format":"mpq-artifact"' in head.replace(b" ", b"")
