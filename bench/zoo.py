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

Printed (``bench/_zoo_report.py``): a markdown table (a row per model, a
column per export way), the summary line (``imported N of M``), every failure
once with the cells it hit (an MPQError's code and message, anything else as
``crash``), the exporters' own failures (not MPQ's, counted apart), the ATen /
ONNX ops in the exports that MPQ's importers do not accept with counts, the
figures that point at a bug, and the float islands of the integer-only models.
The JSON (``--json``, default ``OUT/zoo.json``) holds every figure of every
cell. What the exporters and torch print goes to ``OUT/<model>/<way>.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _zoo_build import ZooModel
from _zoo_cells import Cell, run_cell
from _zoo_export import WAYS, cached_export, export, prepare_dir
from _zoo_models import zoo
from _zoo_report import report, summary_cell

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


@contextmanager
def captured(path: Path) -> Iterator[None]:
    """Send this process's (and its children's) stdout and stderr to ``path`` meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def run_model(
    model: ZooModel, ways: list[str], out: Path, *, quant: bool, fresh: bool
) -> dict[str, Cell]:
    subject = Subject(model, prepare_dir(out, model, fresh=fresh))
    cells: dict[str, Cell] = {}
    for way in ways:
        t0 = time.perf_counter()
        with captured(subject.folder / f"{way}.log"):  # exporters and torch print a lot
            made = cached_export(subject.folder, way)
            if made is None:
                made = export(subject.folder, way, subject.module(), model)
            cell: Cell = {"export": made.error or ("cached" if made.cached else "ok")}
            cell["ops"] = made.ops
            if made.path is not None:
                cell.update(run_cell(made.path, model, subject.eager, quant=quant))
        cell["wall_s"] = round(time.perf_counter() - t0, 1)
        cells[way] = cell
        say(f"  {model.name:<16} {way:<13} {cell['wall_s']:>6.1f}s  {summary_cell(cell)}")
    return cells


def engine_version() -> str:
    """``HEAD``'s short sha, and how many files under engine/ differ from it (others' edits)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "?"

    head, changed = (
        git("rev-parse", "--short", "HEAD"),
        git("status", "--porcelain", "--", "engine"),
    )
    if head == "?":
        return f"{root} (not a git checkout)"
    return f"{head} + {len(changed.splitlines())} uncommitted engine/ files"


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
    parser.add_argument(
        "--json",
        type=Path,
        help="every figure (default OUT/zoo.json; OUT/zoo-partial.json with --only or --ways)",
    )
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
    code = engine_version()
    say(
        f"bench/zoo.py: torch {torch.__version__}, {THREADS} threads, {os.cpu_count()} CPUs, "
        f"load avg {load}, {platform.machine()}; code {code}; exports in {args.out}"
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
    partial = args.only or args.ways != ",".join(WAYS)  # a partial run keeps the full one's
    path = args.json or args.out / ("zoo-partial.json" if partial else "zoo.json")
    sources = {m.name: m.source for m in zoo() if m.name in results}
    head = {"code": code, "torch": torch.__version__, "seconds": round(time.perf_counter() - start)}
    path.write_text(json.dumps({**head, "models": sources, "cells": results, **summary}, indent=1))
    say(f"wrote {path}")


if __name__ == "__main__":
    main()
