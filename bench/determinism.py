"""Simulated evaluation at 1 and 2 threads: float32 layers against float64/exact layers.

Run: ``.venv/bin/python bench/determinism.py --model eff|minilm --dir DIR [--images N]``

``DIR`` holds what ``examples/efficientnet.py --out DIR`` (``efficientnet_lite2.pt2``,
``.npz``) or ``examples/minilm.py --out DIR`` (``minilm.pt2``, ``.npz``) writes. The model
is quantized with int8 weights and 8-bit activations (calibration split) and its first
``--images`` evaluation samples are run through two modules of the same simulated IR:

* ``float32``: :func:`engine.ir.to_graph_module` (the simulated model before: float32
  convolutions and matrix products);
* ``exact``: :func:`engine.transforms.deterministic_module` (what ``QuantizedModel.module()``,
  ``mpq eval`` and the search's evaluator run: layers in float64, exact on activation codes).

Each at ``torch.set_num_threads(1)`` then ``(2)``. Printed per module: seconds per
evaluation at each thread count, output rows that differ bitwise between the two, the
largest difference, top-1 decisions that differ, activation fake-quant outputs that differ
(fake-quant decisions moved by a summation order), and the metric (agreement with the
float model's top-1 for EfficientNet, mean cosine with the float model for MiniLM) at each
thread count.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import fx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data import fit_batch, load_dataset
from engine.io.importers import import_model
from engine.ir import to_graph_module
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import FAKE_QUANT_OP, apply, deterministic_module, inventory

FILES = {"eff": "efficientnet_lite2", "minilm": "minilm"}


class _Recorder(fx.Interpreter):
    """Runs a GraphModule and keeps the output of every activation fake-quant node."""

    def __init__(self, gm: fx.GraphModule, fq_names: set[str]) -> None:
        super().__init__(gm)
        self.fq_names = fq_names
        self.kept: list[torch.Tensor] = []

    def run_node(self, n: fx.Node) -> object:
        out = super().run_node(n)
        if n.meta.get("mpq_name") in self.fq_names:
            self.kept.append(out)
        return out


def _run(gm: fx.GraphModule, batches: list, fq_names: set[str]) -> tuple[torch.Tensor, list, float]:
    rec = _Recorder(gm, fq_names)
    start = time.perf_counter()
    with torch.no_grad():
        outs = [b.unpad(rec.run(*b.tensors)) for b in batches]
    return torch.cat(outs), rec.kept, time.perf_counter() - start


def _metric(model: str, out: torch.Tensor, ref: torch.Tensor) -> float:
    if model == "eff":
        return float((out.argmax(-1) == ref.argmax(-1)).double().mean())
    return float(torch.nn.functional.cosine_similarity(out.double(), ref.double(), dim=-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(FILES), required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    name = FILES[args.model]
    ir = import_model(args.dir / f"{name}.pt2", trust_uploads=True).ir
    ir, data = fit_batch(ir, load_dataset(args.dir / f"{name}.npz", ir.inputs))
    plan = QuantPlan.uniform([x.name for x in inventory(ir).layers], LayerFormat())
    qm = apply(ir, plan, [b.tensors for b in data.batches("calibration")])
    batches, rows = [], 0
    for b in data.batches("evaluation"):
        if rows >= args.images:
            break
        batches.append(b)
        rows += b.n_valid
    fq_names = {n.name for n in qm.ir.nodes if n.op == FAKE_QUANT_OP}
    torch.set_num_threads(1)
    with torch.no_grad():
        ref = torch.cat([b.unpad(deterministic_module(ir)(*b.tensors)) for b in batches])
    print(f"{name}: int8/a8, {rows} samples, batch {data.batch_size}, {len(fq_names)} fake-quants")
    for label, build in (("float32", to_graph_module), ("exact", deterministic_module)):
        gm = build(qm.ir)
        res = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            res[threads] = _run(gm, batches, fq_names)
        (a, fa, ta), (b, fb, tb) = res[1], res[2]
        rows_diff = int((a != b).flatten(1).any(-1).sum())
        top1 = int((a.argmax(-1) != b.argmax(-1)).sum()) if a.dim() == 2 else 0
        fq_diff = sum(int((x != y).sum()) for x, y in zip(fa, fb, strict=True))
        fq_total = sum(x.numel() for x in fa)
        print(
            f"  {label:8s} s/eval 1 thread {ta:7.1f}  2 threads {tb:7.1f} | rows differing "
            f"{rows_diff}/{rows}, max |diff| {float((a - b).abs().max()):.2e}, top-1 differing "
            f"{top1}, fake-quant outputs differing {fq_diff}/{fq_total} | metric 1 thread "
            f"{_metric(args.model, a, ref):.4f}, 2 threads {_metric(args.model, b, ref):.4f}"
        )


if __name__ == "__main__":
    main()
