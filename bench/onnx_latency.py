"""ONNX Runtime throughput of MPQ's int8 QDQ export against its fp32 export, same run.

Run: ``.venv/bin/python bench/onnx_latency.py [--only digits|minilm] [--runs N]``

For the digits CNN and MiniLM, two ONNX files are written by ``engine.io.export``:

* fp32: ``export_float_onnx`` of the batch-norm-folded float IR;
* int8: ``export_onnx`` of ``engine.apply`` with every layer ``int8`` weights
  (per channel) and ``a8`` activations (per tensor, min/max calibration): QDQ.

Each file runs in onnxruntime (CPU provider, all graph optimizations, so ORT
fuses QDQ patterns into its integer kernels where it can) with 1 and with 2
intra-op threads; throughput is samples/s over the median of ``--runs`` timed
runs of one batch after 3 warm-up runs. Ratios are int8 / fp32 at the same thread
count. The int8 file's agreement with the fp32 file on the timed batch is printed
too: top-1 agreement (digits) or mean cosine of the embeddings (MiniLM).

Models and data:

* digits: ``examples.digits.train()`` (seed 0), exported in-process at batch 32;
  calibration: the first 256 training images; the timed batch: the first 32
  held-out images.
* MiniLM: ``examples.minilm.load(model_dir())`` exported at batch 32 x 64 tokens;
  calibration: 64 sentences from ``bench/_sentences.py``; the timed batch: the
  next 32.

The machine may be shared: the load average is printed, and figures are medians.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _sentences import sentences

from engine.io.export import export_float_onnx, export_onnx
from engine.io.importers import exported_program_to_ir
from engine.ir import IRModel
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, fold_batch_norm, inventory

BATCH = 32
THREADS = (1, 2)
WARMUP = 3

Feeds = dict[str, np.ndarray]


@dataclass
class Case:
    """A float model, its calibration batches and the batch that is timed."""

    name: str
    ir: IRModel
    calibration: list[list[torch.Tensor]]
    feeds: Feeds
    compare: Callable[[np.ndarray, np.ndarray], float]
    compare_name: str


def say(msg: str) -> None:
    print(msg, flush=True)


def digits_case() -> Case:
    from examples.digits import load_split, train

    model = train()
    x_tr, x_te, _, _ = load_split()
    x = torch.from_numpy(x_te[:BATCH])
    ir = exported_program_to_ir(torch.export.export(model, (x,)))
    calib = [[b] for b in torch.from_numpy(x_tr[:256]).split(BATCH)]

    def agree(a: np.ndarray, b: np.ndarray) -> float:
        return float((a.argmax(1) == b.argmax(1)).mean())

    return Case("digits", ir, calib, {"x": x.numpy()}, agree, "top-1 agreement")


def minilm_case() -> Case:
    from transformers.utils import logging as hf_logging

    from examples.minilm import INPUT_NAMES, load, model_dir, tokenize

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    path = model_dir()
    model, _ = load(path)
    arrays = tokenize(path, sentences(3 * BATCH))
    tensors = [torch.from_numpy(arrays[name]) for name in INPUT_NAMES]
    batches = [[t[i : i + BATCH] for t in tensors] for i in range(0, 3 * BATCH, BATCH)]
    with torch.no_grad():
        ir = exported_program_to_ir(torch.export.export(model, tuple(batches[0])))
    feeds = {name: t.numpy() for name, t in zip(INPUT_NAMES, batches[2], strict=True)}

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        num = (a * b).sum(1)
        return float((num / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).mean())

    return Case("minilm", ir, batches[:2], feeds, cos, "mean cosine")


def throughput(data: bytes, feeds: Feeds, threads: int, runs: int) -> tuple[float, np.ndarray]:
    """Samples/s (median of ``runs``) and the output of the timed batch."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    for _ in range(WARMUP):
        out = session.run(None, feeds)[0]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return BATCH / statistics.median(times), out


def run(case: Case, runs: int) -> None:
    folded, _ = fold_batch_norm(case.ir)
    names = [layer.name for layer in inventory(folded).layers]
    t0 = time.perf_counter()
    qm = apply(case.ir, QuantPlan.uniform(names, LayerFormat("int8", "a8")), case.calibration)
    exports = {"fp32": export_float_onnx(folded), "int8 w8a8": export_onnx(qm)}
    say(f"{case.name}: {len(names)} layers; apply + export {time.perf_counter() - t0:.1f}s")
    head = f"{'model':<8} {'export':<10} {'file bytes':>12}"
    head += "".join(f" {f'{t} thr smp/s':>13} {'ratio':>6}" for t in THREADS)
    say(head)
    say("-" * len(head))
    base: dict[int, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for label, exported in exports.items():
        row = f"{case.name:<8} {label:<10} {exported.report.file_bytes:>12,}"
        for threads in THREADS:
            sps, outputs[label] = throughput(exported.data, case.feeds, threads, runs)
            base.setdefault(threads, sps)
            row += f" {sps:>13,.1f} {sps / base[threads]:>5.2f}x"
        say(row)
    value = case.compare(outputs["int8 w8a8"], outputs["fp32"])
    say(f"int8 vs fp32 ONNX on the timed batch: {case.compare_name} {value:.4f}")
    say("")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=("digits", "minilm"))
    parser.add_argument("--runs", type=int, default=20, help="timed runs per configuration")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(
        f"bench/onnx_latency.py: onnxruntime {ort.__version__}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, load avg {load}, {platform.machine()}; batch {BATCH}, "
        f"median of {args.runs} runs after {WARMUP} warm-up"
    )
    start = time.perf_counter()
    makers: dict[str, Callable[[], Case]] = {"digits": digits_case, "minilm": minilm_case}
    for name, make in makers.items():
        if args.only in (None, name):
            run(make(), args.runs)
    say(f"total {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
