"""Model zoo: which real architectures, exported the usual ways, MPQ imports, quantizes and exports.

Run: ``.venv/bin/python bench/zoo.py [--only resnet,bert] [--ways pt2-static,onnx-static]
[--out bench/out/zoo] [--json PATH] [--no-quant] [--reexport]``

Models (``bench/_zoo_models.py``): 14 ``transformers`` architectures built
from small configs with seeded random weights (ResNet, MobileNetV1/V2,
EfficientNet, ConvNeXt, RegNet, ViT, Segformer, BERT, DistilBERT, GPT-2, Llama,
Whisper encoder, Wav2Vec2) and MPQ's two examples (the trained digits CNN, the
real MiniLM encoder). Each is exported five ways (``bench/_zoo_export.py``:
``.pt2`` static / dynamic batch, TorchScript ONNX static / dynamic batch, dynamo
ONNX), cached under ``--out``. Each export that exists is one cell
(``bench/_zoo_cells.py``): import, IR vs eager max relative error, batch norms
folded, int8 w8a8 simulated and integer-only mean cosine to the float IR (with
integer-only full/partial and its float islands), and MPQ's QDQ ONNX export run
in onnxruntime against MPQ's simulated outputs (max relative error).

Printed: a markdown table (a row per model, a column per export way), the
summary line, every failure once with the cells it hit, and the ATen / ONNX
ops seen in the exports that MPQ's importers do not accept, with counts.
The JSON (``--json``, default ``OUT/zoo.json``) holds every figure of every cell.
Exporter failures are not MPQ's: they are counted apart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _zoo_cells import Cell, run_cell
from _zoo_export import WAYS, cached_export, export, prepare_dir
from _zoo_models import ZooModel, zoo

from engine.importers.onnx import SUPPORTED_ONNX_OPS
from engine.ops import ALLOWED_OPS

THREADS = 2
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "zoo"


def say(msg: str = "") -> None:
    print(msg, flush=True)


class Subject:
    """A zoo model built at most once, with its eager outputs cached on disk per batch."""

    def __init__(self, model: ZooModel, folder: Path) -> None:
        self.model, self.folder = model, folder
        self._module: nn.Module | None = None

    def module(self) -> nn.Module:
        if self._module is None:
            self._module = self.model.build()
        return self._module

    def eager(self, batch: int) -> torch.Tensor:
        path = self.folder / f"eager_b{batch}.npy"
        if not path.is_file():
            with torch.no_grad():
                np.save(path, self.module()(*self.model.example(batch)).numpy())
        return torch.from_numpy(np.load(path))


def run_model(
    model: ZooModel, ways: list[str], out: Path, *, quant: bool, fresh: bool
) -> dict[str, Cell]:
    subject = Subject(model, prepare_dir(out, model, fresh=fresh))
    cells: dict[str, Cell] = {}
    for way in ways:
        t0 = time.perf_counter()
        made = cached_export(subject.folder, way)
        if made is None:
            made = export(subject.folder, way, subject.module(), model)
        cell: Cell = {"export": made.error or ("cached" if made.cached else "ok"), "ops": made.ops}
        if made.path is not None:
            cell.update(run_cell(made.path, model, subject.eager, quant=quant))
        cell["wall_s"] = round(time.perf_counter() - t0, 1)
        cells[way] = cell
        say(f"  {model.name:<16} {way:<13} {cell['wall_s']:>6.1f}s  {summary_cell(cell)}")
    return cells


def _e(x: float) -> str:
    return "0" if x == 0 else f"{x:.0e}" if x < 0.01 else f"{x:.2f}"


def summary_cell(cell: Cell, refs: dict[tuple[str, str, str], str] | None = None) -> str:
    """One table cell: the figures measured, and the first failing stage's code."""
    if cell["export"] not in ("ok", "cached"):
        return "export failed"
    errors: dict[str, dict[str, str]] = cell.get("errors", {})

    def fail(stage: str) -> str:
        err = errors[stage]
        ref = refs.get((stage, err["code"], err["message"]), "") if refs else ""
        return f"✗ {stage}: `{err['code']}`{' ' + ref if ref else ''}"

    if "import" in errors:
        return fail("import")
    parts = [f"ir {_e(cell['ir_rel_err'])}" if "ir_rel_err" in cell else fail("ir")]
    if "bn" in cell:
        parts.append(f"bn {cell['bn']['folded']}/{cell['bn']['left']}")
    if "quantize" in errors:
        parts.append(fail("quantize"))
    elif "sim_cosine" in cell:
        parts.append(f"w8a8 {cell['sim_cosine']:.3f}")
        if "integer" in errors:
            parts.append(fail("integer"))
        else:
            parts.append(f"int {cell['int_cosine']:.3f} {cell['integer_only']}")
        parts.append(fail("onnx") if "onnx" in errors else f"ort {_e(cell['onnx_rel_err'])}")
    return " · ".join(parts)


def failure_groups(results: dict[str, dict[str, Cell]]) -> list[dict[str, Any]]:
    """Identical (stage, code, message) failures grouped, most frequent first."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for name, cells in results.items():
        for way, cell in cells.items():
            for stage, err in cell.get("errors", {}).items():
                groups[(stage, err["code"], _generic(err["message"]))].append(f"{name}/{way}")
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [
        {"ref": f"[{i + 1}]", "stage": s, "code": c, "message": m, "cells": where}
        for i, ((s, c, m), where) in enumerate(ordered)
    ]


def _generic(message: str) -> str:
    """``message`` with torch's symbol names (``s43``) made equal, so such failures group."""
    return re.sub(r"\bs\d+\b", "sN", message)


def export_failures(results: dict[str, dict[str, Cell]]) -> dict[str, list[str]]:
    failed: dict[str, list[str]] = defaultdict(list)
    for name, cells in results.items():
        for way, cell in cells.items():
            if cell["export"] not in ("ok", "cached"):
                failed[cell["export"]].append(f"{name}/{way}")
    return dict(failed)


def unsupported_ops(results: dict[str, dict[str, Cell]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"aten"|"onnx": {op: {"models": {model: nodes}, "named": bool}}}``: ops not accepted.

    An op counts when it is off the importer's list (``engine.ops.ALLOWED_OPS``,
    ``SUPPORTED_ONNX_OPS``) and no file holding it imported (the ``.pt2``
    importer rewrites some ops, e.g. in-place ones, before checking), or when an
    import error names it. ``named`` says an import error named it; otherwise
    every file holding it failed earlier (a dynamic shape, another op).
    A model's node count is its largest over its files of that kind; ``aten._assert_*``
    checks are left out (the importer drops them).
    """
    seen: dict[str, dict[str, dict[str, Any]]] = {"aten": {}, "onnx": {}}
    accepted: set[str] = set()
    named: set[str] = set()
    for cells in results.values():
        for cell in cells.values():
            err = cell.get("errors", {}).get("import")
            if cell["export"] in ("ok", "cached") and err is None:
                accepted.update(cell["ops"])
            elif err is not None and err["code"] == "unsupported_ops":
                named.update(op for op in cell["ops"] if _names_op(short(err["message"]), op))
    for name, cells in results.items():
        for way, cell in cells.items():
            kind = "aten" if way.startswith("pt2") else "onnx"
            known = ALLOWED_OPS if kind == "aten" else SUPPORTED_ONNX_OPS
            for op, count in cell["ops"].items():
                off_list = op not in known and op not in accepted
                if (off_list or op in named) and not op.startswith("aten._assert_"):
                    entry = seen[kind].setdefault(op, {"models": {}, "named": op in named})
                    entry["models"][name] = max(entry["models"].get(name, 0), count)
    return seen


def _names_op(message: str, op: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(op)}(?!\.?\w)", message) is not None


def short(message: str) -> str:
    """A message without the long list of supported ops that some errors append."""
    return re.sub(r" (Supported: |Supported operators are listed).*", " …", message)


def report(results: dict[str, dict[str, Cell]], ways: list[str]) -> dict[str, Any]:
    groups = failure_groups(results)
    refs = {(g["stage"], g["code"], g["message"]): g["ref"] for g in groups}
    for cells in results.values():  # each cell's own message -> its group's reference
        for cell in cells.values():
            for stage, err in cell.get("errors", {}).items():
                key = (stage, err["code"], _generic(err["message"]))
                refs[(stage, err["code"], err["message"])] = refs[key]
    say("| model | " + " | ".join(ways) + " |")
    say("| --- |" + " --- |" * len(ways))
    for name, cells in results.items():
        row = [summary_cell(cells[w], refs) if w in cells else "" for w in ways]
        say(f"| {name} | " + " | ".join(row) + " |")
    cells = [c for per in results.values() for c in per.values()]
    exported = [c for c in cells if c["export"] in ("ok", "cached")]
    imported = [c for c in exported if "import" not in c.get("errors", {})]
    close = [c for c in imported if c.get("ir_rel_err", 1.0) <= 1e-4]
    ort = [c for c in imported if "onnx_rel_err" in c]
    full = [c for c in imported if c.get("integer_only") == "full"]
    say()
    say(
        f"imported {len(imported)} of {len(exported)} exported files ({len(cells)} cells, "
        f"{len(cells) - len(exported)} exports failed); IR within 1e-4 of eager: {len(close)}; "
        f"int8 integer-only full: {len(full)}; quantized ONNX ran in onnxruntime: {len(ort)}"
    )
    say()
    say("Failures (stage, code, message; cells):")
    for g in groups:
        say(f"{g['ref']} {g['stage']} `{g['code']}`: {short(g['message'])}")
        say(f"    {len(g['cells'])} cells: {', '.join(g['cells'])}")
    say()
    say("Exporter failures (not MPQ's):")
    failed = export_failures(results)
    for message, where in failed.items():
        say(f"- {message}\n    {', '.join(where)}")
    ops = unsupported_ops(results)
    for kind, title in (("aten", "ATen ops in .pt2 exports"), ("onnx", "ONNX ops")):
        say()
        say(f"{title} MPQ's importer does not accept (op: nodes, models):")
        entries = sorted(ops[kind].items(), key=lambda kv: (-len(kv[1]["models"]), kv[0]))
        for op, entry in entries:
            models = entry["models"]
            tag = "" if entry["named"] else " (not reached: every file failed before)"
            count = f"{sum(models.values())} nodes, {len(models)} models"
            say(f"- {op}: {count} ({', '.join(models)}){tag}")
    return {"failures": groups, "export_failures": failed, "unsupported_ops": ops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    names = [m.name for m in zoo()]
    parser.add_argument("--only", help=f"comma-separated models: {', '.join(names)}")
    parser.add_argument(
        "--ways", default=",".join(WAYS), help=f"comma-separated: {', '.join(WAYS)}"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="exports cache (default %(default)s)"
    )
    parser.add_argument("--json", type=Path, help="write every figure here (default OUT/zoo.json)")
    parser.add_argument("--no-quant", action="store_true", help="import + IR check only")
    parser.add_argument("--reexport", action="store_true", help="ignore cached exports")
    args = parser.parse_args()
    only = args.only.split(",") if args.only else names
    ways = args.ways.split(",")
    for bad, known in ((set(only) - set(names), names), (set(ways) - set(WAYS), WAYS)):
        if bad:
            parser.error(f"unknown {sorted(bad)}; choose from {', '.join(known)}")
    torch.set_num_threads(THREADS)
    warnings.filterwarnings("ignore")
    for noisy in ("torch.onnx", "torch.export", "torch._dynamo", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(
        f"bench/zoo.py: torch {torch.__version__}, {THREADS} threads, {os.cpu_count()} CPUs, "
        f"load avg {load}, {platform.machine()}; exports in {args.out}"
    )
    start = time.perf_counter()
    results: dict[str, dict[str, Cell]] = {}
    for model in zoo():
        if model.name in only:
            results[model.name] = run_model(
                model, ways, args.out, quant=not args.no_quant, fresh=args.reexport
            )
    say()
    summary = report(results, ways)
    say(f"\ntotal {time.perf_counter() - start:.1f}s")
    path = args.json or args.out / "zoo.json"
    sources = {m.name: m.source for m in zoo() if m.name in results}
    path.write_text(json.dumps({"models": sources, "cells": results, **summary}, indent=1))
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
