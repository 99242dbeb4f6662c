"""Job time against model cost: prepare seconds / seconds of one float evaluation, per model.

Run: ``nice .venv/bin/python bench/job_cost.py [--only digits,minilm,efficientnet] [--calib 64]
[--eval 256] [--work DIR]``

A job's prepare phase (what a worker does before the first trial) should grow at most
linearly with what the model costs to run. Per model, in this process, one thread, as a
worker prepares a job: ``search.open_evaluator`` (load the model and data, the float
reference outputs of every split) then ``search.create_search`` (sensitivity with no cache,
ILP seeding, the study in memory), timed apart and together; then the model cost, one
float evaluation of the search split (the float32 graph the trials run,
:func:`bench.efficientnet_goal.float_eval_seconds`); and the ratio prepare / float
evaluation: the number of float evaluations the preparation costs. Constant across
models means prepare time linear in model cost. Every figure is given in wall seconds and
in CPU seconds (this process, one thread, and any child process it waited for): on
a shared machine the wall seconds of the same float evaluation vary 2x with the other
work, the CPU seconds far less.

Each model with the job its own benchmark runs:

* ``digits``: the digits CNN (``examples/digits.py``, built into ``examples/out`` when
  missing), accuracy within 1 pt, the default space (8-bit activations), holdout 0.25;
* ``minilm``: all-MiniLM-L6-v2 (``bench/minilm_goal.py``'s ``build``: 256 calibration and
  512 evaluation sentences), cosine >= 0.99, weight-only, holdout 0.5;
* ``efficientnet``: EfficientNet-Lite2 (``bench/efficientnet_goal.py``'s data: 64
  calibration and 256 evaluation crops), KL <= 0.01, weight-only, holdout 0.5.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import ROOT
from bench.efficientnet_goal import (
    CALIB,
    EVAL,
    build,
    cpu_seconds,
    float_eval_seconds,
    job_body,
)
from search import JobSpec, Targets, create_search, open_evaluator

MODELS = ("digits", "minilm", "efficientnet")


def say(msg: str = "") -> None:
    print(msg, flush=True)


@dataclass
class Row:
    """One model's preparation and model cost, in seconds."""

    model: str
    macs: int
    layers: int
    method: str
    samples: int
    open_s: tuple[float, float]
    """(wall, CPU) seconds of ``open_evaluator``; likewise below."""
    setup_s: tuple[float, float]
    float_s: tuple[float, float]

    def prepare(self, i: int) -> float:
        """Prepare seconds: wall (``i=0``) or CPU (``i=1``)."""
        return self.open_s[i] + self.setup_s[i]

    def ratio(self, i: int) -> float:
        return self.prepare(i) / self.float_s[i]


def inputs(name: str, work: Path, *, calib: int, evaluation: int) -> tuple[JobSpec, Path, Path]:
    """The job spec, model file and data file of ``name`` (module doc)."""
    if name == "digits":
        out = ROOT / "examples/out"
        if not (out / "digits.pt2").is_file():
            cmd = [sys.executable, "examples/digits.py", "--out", str(out)]
            subprocess.run(cmd, cwd=ROOT, check=True)
        spec = JobSpec(metric="accuracy", targets=Targets(max_drop=0.01))
        return spec, out / "digits.pt2", out / "digits.npz"
    if name == "minilm":
        from bench.minilm_goal import build as build_minilm

        model, data = build_minilm(work)
        spec = JobSpec(
            metric="cosine", targets=Targets(min_metric=0.99), activation=("float",), holdout=0.5
        )
        return spec, model, data
    model, data = build(work, calib, evaluation)
    return JobSpec.from_json(job_body()), model, data


def measure(name: str, spec: JobSpec, model: Path, data: Path) -> Row:
    """Prepare ``spec``'s search on ``model`` and ``data`` as a worker does; time it."""
    config = spec.search_config(model=str(model), data=str(data))
    t0, c0 = time.perf_counter(), cpu_seconds()
    ev = open_evaluator(config, trust_uploads=True)
    t1, c1 = time.perf_counter(), cpu_seconds()
    search = create_search(config, ev)
    t2, c2 = time.perf_counter(), cpu_seconds()
    open_s, setup_s = (t1 - t0, c1 - c0), (t2 - t1, c2 - c1)
    float_s = float_eval_seconds(ev.ir, ev.batches)
    samples = sum(b.n_valid for b in ev.batches)
    method = str(search.study.user_attrs.get("sensitivity_method"))
    return Row(name, ev.total_macs, len(ev.layers), method, samples, open_s, setup_s, float_s)


def report(rows: list[Row]) -> None:
    """The table: wall seconds, then CPU seconds, each with prepare / float evaluation."""
    head = (
        f"{'model':<13} {'GMAC/sample':>11} {'layers':>6} {'sens.':>5} {'search n':>8} "
        f"{'open s':>7} {'setup s':>8} {'prepare s':>9} {'float s':>8} {'ratio':>7} "
        f"{'prepare CPU s':>13} {'float CPU s':>11} {'CPU ratio':>9}"
    )
    say(head)
    say("-" * len(head))
    for r in rows:
        say(
            f"{r.model:<13} {r.macs / 1e9:>11.4f} {r.layers:>6} {r.method:>5} {r.samples:>8} "
            f"{r.open_s[0]:>7.1f} {r.setup_s[0]:>8.1f} {r.prepare(0):>9.1f} "
            f"{r.float_s[0]:>8.3f} {r.ratio(0):>7.1f} {r.prepare(1):>13.1f} "
            f"{r.float_s[1]:>11.3f} {r.ratio(1):>9.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--calib", type=int, default=CALIB, help="EfficientNet calibration crops")
    parser.add_argument("--eval", type=int, default=EVAL, help="EfficientNet evaluation crops")
    args = parser.parse_args()
    names = args.only.split(",")
    unknown = set(names) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(1)  # as the workers run
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(f"command: {' '.join(sys.orig_argv)}")
    say(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, load avg {load}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in names:
            spec, model, data = inputs(name, work, calib=args.calib, evaluation=args.eval)
            rows.append(measure(name, spec, model, data))
            r = rows[-1]
            say(
                f"{name}: prepare {r.prepare(0):.1f} s ({r.prepare(1):.1f} CPU s), float "
                f"evaluation {r.float_s[0]:.3f} s ({r.float_s[1]:.3f} CPU s)"
            )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(f"load avg after: {load}")
    report(rows)


if __name__ == "__main__":
    main()
