"""Evaluation speed whatever batch a model was exported with: `mpq eval` on MiniLM and digits.

Run: ``.venv/bin/python bench/batch_eval.py [--only minilm|digits] [--repeats N]``

Each model is exported four ways from the same weights -- ``torch.export`` at a batch
of 1, at 7, at 32, and with a dynamic batch (``dynamic_shapes`` on dimension 0) --
and each file is evaluated with ``engine.evaluate_file`` (what ``mpq eval``
runs: import in the sandbox, data validation, the metric) on the same data file.
MPQ finds which literals of each graph carry the batch
(``engine.ir.generalize_batch``) and evaluates every export at the same
memory-bounded batch (``engine.data.evaluation_batch``), so the times should agree;
before, a batch-1 export was evaluated one sample at a time. Printed per export:
import + evaluate wall time (best of ``--repeats``), the evaluation batch used, the
metric, and the ratio to the batch-32 export measured in the same run; then, for the
batch-1 export, the evaluation forward passes alone at MPQ's batch and at the fixed
batch of 1 (the batch dimension dropped: what evaluating it cost before).

* MiniLM: the real all-MiniLM-L6-v2 (``examples/minilm.py``), 256 real sentences
  (``bench/_sentences.py``) of 64 tokens, metric ``cosine`` against the model itself
  (1.0 for every export -- a check that all four compute the same thing).
* digits: the example CNN (``examples/digits.py``, seed 0), its 540 held-out
  images, metric ``accuracy``.

Threads: ``torch.set_num_threads(2)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.export import Dim

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import evaluate_file
from engine.data import evaluate, evaluation_batch, fit_batch, load_dataset
from engine.io.importers import import_model
from engine.ir import to_graph_module

EXPORTS = ("batch 1", "batch 7", "batch 32", "dynamic")


def _export(
    model: torch.nn.Module, example: tuple[torch.Tensor, ...], out: Path
) -> dict[str, Path]:
    """The four exports of ``model`` (``example`` holds at least 32 rows)."""
    paths = {}
    for way in EXPORTS:
        n = 32 if way == "dynamic" else int(way.split()[1])
        args = tuple(t[:n] for t in example)
        shapes = tuple({0: Dim("batch")} for _ in args) if way == "dynamic" else None
        with torch.no_grad():
            program = torch.export.export(model, args, dynamic_shapes=shapes)
        path = out / f"{way.replace(' ', '')}.pt2"
        torch.export.save(program, path)
        paths[way] = path
    return paths


def _minilm(out: Path) -> tuple[dict[str, Path], Path, str]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bench._sentences import sentences
    from examples.minilm import INPUT_NAMES, load, model_dir, tokenize

    model, _ = load(model_dir())
    arrays = tokenize(model_dir(), sentences(256))
    np.savez(out / "minilm.npz", **arrays)  # type: ignore[arg-type]
    example = tuple(torch.from_numpy(arrays[n][:32]) for n in INPUT_NAMES)
    return _export(model, example, out), out / "minilm.npz", "cosine"


def _digits(out: Path) -> tuple[dict[str, Path], Path, str]:
    from examples.digits import load_split, train

    model = train()
    x_tr, x_te, _, y_te = load_split()
    np.savez(out / "digits.npz", x=x_te, labels=y_te, **{"calib/x": x_tr[:256]})  # type: ignore[arg-type]
    example = (torch.from_numpy(x_te[:32]),)
    return _export(model, example, out), out / "digits.npz", "accuracy"


MODELS: dict[str, Callable[[Path], tuple[dict[str, Path], Path, str]]] = {
    "minilm": _minilm,
    "digits": _digits,
}


def _time(path: Path, data: Path, metric: str, repeats: int) -> tuple[float, float, int]:
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = evaluate_file(path, data, metric=metric).value
        best = min(best, time.perf_counter() - t0)
    samples = int(np.load(data)[next(iter(np.load(data).files))].shape[0])
    batch = evaluation_batch(import_model(path).ir, samples)
    return best, value, batch


def _forward_seconds(path: Path, data: Path, *, fixed: bool) -> tuple[float, int]:
    """Seconds of the evaluation forward passes alone, and the batch they ran at.

    ``fixed`` drops the batch dimension MPQ found (``ir.batch = None``): the model
    then runs in batches of its exported batch, as every model did before.
    """
    ir = import_model(path).ir
    if fixed:
        ir = replace(ir, batch=None)
    ir, dataset = fit_batch(ir, load_dataset(data, ir.inputs))
    module = to_graph_module(ir)
    t0 = time.perf_counter()
    evaluate(module, dataset, "evaluation")
    return time.perf_counter() - t0, dataset.batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print("| model | export | eval batch | import + eval (s) | metric | vs batch 32 |")
    print("|---|---|---:|---:|---:|---:|")
    for name, build in MODELS.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            paths, data, metric = build(Path(tmp))
            rows = {way: _time(p, data, metric, args.repeats) for way, p in paths.items()}
            fixed = _forward_seconds(paths["batch 1"], data, fixed=True)
            generic = _forward_seconds(paths["batch 1"], data, fixed=False)
        base = rows["batch 32"][0]
        for way, (secs, value, batch) in rows.items():
            print(
                f"| {name} | {way} | {batch} | {secs:.2f} | {metric} {value:.4f} | "
                f"{secs / base:.2f}x |"
            )
        print(
            f"| {name} | batch 1, forward passes only: at batch {generic[1]} {generic[0]:.2f} s, "
            f"at its fixed batch {fixed[1]} {fixed[0]:.2f} s | | | | "
            f"{fixed[0] / generic[0]:.1f}x faster |"
        )


if __name__ == "__main__":
    main()
