"""Uniform weight formats on the digits CNN and MiniLM: metric, payload, compression, time.

Run: ``.venv/bin/python bench/uniform.py [--only digits|minilm] [--quick | --formats int4,cb16]
[--bias-correction]``

Every layer gets the same weight format -- int2, int3, int4, int5, int6, int8
(per-channel symmetric, ``scale="mse"``) or a k-means codebook cb4, cb16, cb256
-- rounded ``nearest`` or ``gptq``; activations stay float (weights only).
``--bias-correction`` sets ``bias_correction`` in every row's format.
``--quick`` keeps int8 and int4; ``--formats`` picks any subset. Per row:

* the metric on held-out data, and its change against fp32 measured in the same run;
* the payload bytes of the ``model.mpq`` the plan would write
  (``engine.io.predict_model_payload``) and the compression, fp32 tensor
  bytes of the unfolded model / payload;
* the apply time (``engine.apply`` with a warm ``WeightCache``: weight
  quantization and graph rewrite). Calibration (activation ranges and the
  input Hessians of every layer) runs once per model, is timed separately, and
  is shared through the cache by all rows.

Models and data:

* digits: ``examples.digits.train()`` (seed 0, 30 epochs), exported in-process at
  batch 32. Calibration: the first 256 training images (8 batches of 32). Metric:
  top-1 accuracy on the held-out split in batches of 32; the last partial batch
  is dropped (540 held-out images -> 512 scored).
* MiniLM: ``examples.minilm.load(model_dir())`` exported in-process at batch 32 x 64
  tokens. Sentences: real English from installed package metadata and stdlib
  docstrings (``bench/_sentences.py``), a fixed seeded sample split into 256 for
  calibration (8 batches) and a disjoint 512 for evaluation (16 batches).
  Metric: mean cosine similarity of the quantized model's sentence embeddings to
  the fp32 model's on the evaluation sentences.

Threads: ``torch.set_num_threads(2)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sentences import digest, sentences

from engine.data import accuracy, cosine
from engine.io import predict_model_payload
from engine.io.importers import exported_program_to_ir
from engine.ir import IRModel, to_graph_module
from engine.quant import LayerFormat, QuantPlan, Rounding, ScaleMethod
from engine.transforms import WeightCache, apply, calibrate, fold_batch_norm, inventory

FORMATS = ("int2", "int3", "int4", "int5", "int6", "int8", "cb4", "cb16", "cb256")
QUICK_FORMATS = ("int8", "int4")
ROUNDINGS: tuple[Rounding, ...] = ("nearest", "gptq")
THREADS = 2
BATCH = 32
CALIB = 256
MINILM_EVAL = 512

Batches = list[tuple[torch.Tensor, ...]]


@dataclass
class Case:
    """A model and how to score it."""

    name: str
    ir: IRModel
    calibration: Batches
    score: Callable[[torch.nn.Module], float]
    metric: str


def say(msg: str) -> None:
    print(msg, flush=True)


def batches(*arrays: torch.Tensor) -> Batches:
    """Full batches of BATCH rows (a trailing partial batch is dropped)."""
    n = len(arrays[0]) // BATCH * BATCH
    return [tuple(a[i : i + BATCH] for a in arrays) for i in range(0, n, BATCH)]


def digits_case() -> Case:
    from examples.digits import load_split, train

    t0 = time.perf_counter()
    model = train()
    x_tr, x_te, _, y_te = load_split()
    x = torch.from_numpy(x_te)
    ir = exported_program_to_ir(torch.export.export(model, (x[:BATCH],)))
    calib = batches(torch.from_numpy(x_tr[:CALIB]))
    evals = batches(x, torch.from_numpy(y_te))

    def score(module: torch.nn.Module) -> float:
        with torch.no_grad():
            logits = torch.cat([module(xb) for xb, _ in evals])
        return accuracy(logits, torch.cat([yb for _, yb in evals]))

    say(
        f"digits: trained + exported in {time.perf_counter() - t0:.1f}s; calibration "
        f"{len(calib) * BATCH} training images, eval {len(evals) * BATCH} of {len(x)} held-out "
        "(last partial batch dropped)"
    )
    return Case("digits", ir, calib, score, "top-1")


def minilm_case() -> Case:
    from transformers.utils import logging as hf_logging

    from examples.minilm import INPUT_NAMES, load, model_dir
    from examples.minilm import tokenize as tokenize_texts

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    t0 = time.perf_counter()
    path = model_dir()
    model, _ = load(path)
    texts = sentences(CALIB + MINILM_EVAL)
    cal_texts, eval_texts = texts[:CALIB], texts[CALIB:]

    def tokenize(items: Sequence[str]) -> Batches:
        arrays = tokenize_texts(path, items)
        return batches(*(torch.from_numpy(arrays[name]) for name in INPUT_NAMES))

    calib, evals = tokenize(cal_texts), tokenize(eval_texts)
    with torch.no_grad():
        program = torch.export.export(model, calib[0])
    ir = exported_program_to_ir(program)
    fp32_module = to_graph_module(ir)
    with torch.no_grad():
        ref = torch.cat([fp32_module(*b) for b in evals])
        eager = torch.cat([model(*b) for b in evals])
    diff = float((ref - eager).abs().max())

    def score(module: torch.nn.Module) -> float:
        with torch.no_grad():
            out = torch.cat([module(*b) for b in evals])
        return cosine(out, ref)

    say(
        f"minilm: loaded + exported in {time.perf_counter() - t0:.1f}s; sentences: "
        f"{len(cal_texts)} calibration + {len(eval_texts)} eval (disjoint, sha {digest(texts)}); "
        f"IR vs eager max |diff| {diff:.1e}"
    )
    return Case("minilm", ir, calib, score, "cosine")


def run(case: Case, formats: Sequence[str], *, bias_correction: bool = False) -> None:
    fp32_bytes = sum(t.numel() * t.element_size() for t in case.ir.tensors.values())
    folded, _ = fold_batch_norm(case.ir)
    layers = inventory(folded).layers
    names = [layer.name for layer in layers]

    t0 = time.perf_counter()
    fp32 = case.score(to_graph_module(case.ir))
    eval_s = time.perf_counter() - t0

    cache = WeightCache()
    t0 = time.perf_counter()
    cache.hessian_layers = set(names)
    cache.stats = calibrate(folded, layers, case.calibration, hessian_layers=cache.hessian_layers)
    calib_s = time.perf_counter() - t0
    say(
        f"{case.name}: {len(names)} layers; calibration (ranges + Hessians, "
        f"{len(case.calibration)} batches) {calib_s:.1f}s; one eval pass {eval_s:.1f}s"
    )
    say("")
    head = f"{'format':<8} {'rounding':<8} {case.metric:>8} {'delta':>8} {'payload B':>11} "
    say(head + f"{'compr':>7} {'apply s':>8}")
    say("-" * (len(head) + 16))
    say(f"{'fp32':<8} {'-':<8} {fp32:>8.4f} {0:>+8.4f} {fp32_bytes:>11,} {1:>6.2f}x {'-':>8}")
    for weight in formats:
        for rounding in ROUNDINGS:
            scale: ScaleMethod = "mse" if weight.startswith("int") else "max"
            fmt = LayerFormat(
                weight=weight,
                activation="float",
                rounding=rounding,
                scale=scale,
                bias_correction=bias_correction,
            )
            plan = QuantPlan.uniform(names, fmt)
            t0 = time.perf_counter()
            qm = apply(case.ir, plan, case.calibration, cache=cache)
            apply_s = time.perf_counter() - t0
            payload = predict_model_payload(qm)
            value = case.score(qm.module())
            say(
                f"{weight:<8} {rounding:<8} {value:>8.4f} {value - fp32:>+8.4f} {payload:>11,} "
                f"{fp32_bytes / payload:>6.2f}x {apply_s:>8.2f}"
            )
    say("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=("digits", "minilm"))
    parser.add_argument("--quick", action="store_true", help=f"formats {', '.join(QUICK_FORMATS)}")
    parser.add_argument("--formats", help=f"comma-separated subset of {', '.join(FORMATS)}")
    parser.add_argument(
        "--bias-correction", action="store_true", help="bias-correct every quantized layer"
    )
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    formats = QUICK_FORMATS if args.quick else FORMATS
    if args.formats:
        formats = tuple(f.strip() for f in args.formats.split(","))
        unknown = sorted(set(formats) - set(FORMATS))
        if unknown:
            parser.error(f"unknown formats {unknown}; choose from {', '.join(FORMATS)}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(
        f"bench/uniform.py: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load avg {load}, {platform.machine()}; "
        "weights only (activations float), int formats scale=mse"
        + (", bias correction" if args.bias_correction else "")
    )
    start = time.perf_counter()
    makers: dict[str, Callable[[], Case]] = {"digits": digits_case, "minilm": minilm_case}
    for name, make in makers.items():
        if args.only in (None, name):
            run(make(), formats, bias_correction=args.bias_correction)
    say(f"total {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
