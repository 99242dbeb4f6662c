"""EfficientNet-Lite2 through the REST API: compression at held-out agreement and KL, job time.

Run: ``nice .venv/bin/python bench/efficientnet_goal.py [--calib 64] [--eval 256]
[--holdout 0.5] [--trials 40] [--metric kl|agreement] [--activations float[,a8]] [--work DIR]``

The pretrained ImageNet EfficientNet-Lite2 from its PyPI wheels (``examples/efficientnet.py``:
a ``.pt2`` with a dynamic batch; random crops of the photos scikit-image and scikit-learn
ship; labels = the fp32 model's top-1). Defaults: 64 calibration and 256 evaluation crops,
half of them held out (``holdout=0.5``: 128 search, 128 held-out, stratified by label).
Every trial scores the search split, so its size prices the whole search (128 images: one
float pass takes 8-17 s here); 128 held-out images give agreement a 95% interval about
6.5 pt wide (124 of 128: [0.922, 0.988]), the least that tells a plan at 0.97 from one at
0.92 (64 would give 10 pt). 64 calibration crops are what ``bench/integer_cnn.py`` calibrates this
model on; weight-only plans use them only for GPTQ's Hessians and the sensitivity.

The job runs as a user runs it: the real stack (``bench/_stack.py``: ``mpq db upgrade``,
uvicorn, ``mpq worker --concurrency 1``, embedded SQLite database and broker, a fresh data
directory so the sensitivity cache is cold), model and data uploaded over ``/v1/models`` and
``/v1/datasets``, ``POST /v1/jobs`` with metric ``kl`` and target ``max_metric: 0.01``
(default; ``--metric agreement`` asks ``min_metric: 0.97`` instead), the default weight
formats and roundings, activations ``float`` (weight-only; ``--activations float,a8`` lets
every layer choose), seed 0. KL is the default target because it is the smoother of the
two figures: the crops are far from ImageNet's classes (the fp32 top-1 probability
averages about 0.3), so top-1 flips on a few images even under fp16 weights, and a target
on agreement would be judged on a handful of flips. ``GET /v1/jobs/{id}`` is polled every
``POLL_S``; each phase (``progress``: preparing steps loading, calibrating, sensitivity,
seeding; searching; finalizing) is timed from the first poll that saw it, and prepare and
wall also from the job row's own ``created_at``/``started_at``/``finished_at``.

After the job, in this process: ``model.mpq`` is downloaded and scored on the job's held-out
split (the same spec opens the same split) for agreement (Wilson interval) and mean KL
(bootstrap interval), and the model cost is timed: one float evaluation, the float32 graph
the trials run (``engine.ir.to_graph_module`` of the imported model, one thread, one
warm-up batch untimed) over the whole evaluation split and over the search split.
``bench/job_cost.py`` gives the rows prepare seconds / model cost for digits, MiniLM and
this CNN.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import ROOT, StackError, Worker, start_api, start_worker, upload
from engine.data import (
    METRICS,
    Batch,
    agreement,
    bootstrap_interval,
    kl_divergence,
    metric_interval,
)
from engine.io import load_artifact
from engine.ir import IRModel, to_graph_module
from search import JobSpec, open_evaluator

CALIB, EVAL, HOLDOUT, TRIALS = 64, 256, 0.5, 40
GOAL_RATIO = 5.0
GOAL_AGREEMENT = 0.97
GOAL_KL = 0.01
GOAL_WALL_S = 1800.0
GOAL_PREPARE_SHARE = 0.20
POLL_S = 0.5
JOB_TIMEOUT_S = 7200.0  # a slow job is reported, not cut off
FINAL = {"succeeded", "failed", "cancelled"}


def say(msg: str = "") -> None:
    print(msg, flush=True)


def build(work: Path, calib: int, evaluation: int) -> tuple[Path, Path]:
    """``examples/efficientnet.py`` into ``work``: the ``.pt2`` and its ``.npz``."""
    sizes = ["--calib", str(calib), "--eval", str(evaluation)]
    subprocess.run(
        [sys.executable, "examples/efficientnet.py", "--out", str(work), *sizes],
        cwd=ROOT,
        check=True,
    )
    return work / "efficientnet_lite2.pt2", work / "efficientnet_lite2.npz"


def job_body(
    *,
    metric: str = "kl",
    activations: Sequence[str] = ("float",),
    trials: int = TRIALS,
    holdout: float = HOLDOUT,
) -> dict[str, Any]:
    """The ``POST /v1/jobs`` body without the ids (module doc)."""
    target = {"max_metric": GOAL_KL} if metric == "kl" else {"min_metric": GOAL_AGREEMENT}
    return {
        "metric": metric,
        "targets": target,
        "activation": list(activations),
        "budget": {"trials": trials},
        "seed": 0,
        "holdout": holdout,
    }


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that ended (the sandboxed importer)."""
    t = os.times()  # children in clock ticks (10 ms); this process at full resolution
    return time.process_time() + t.children_user + t.children_system


def float_eval_seconds(ir: IRModel, batches: Sequence[Batch]) -> tuple[float, float]:
    """(wall, CPU) seconds of one pass of the float32 graph over ``batches``.

    The first batch is run once before, untimed. CPU seconds are :func:`cpu_seconds`: on a
    shared machine they move far less with the load than wall seconds.
    """
    module = to_graph_module(ir)
    with torch.no_grad():
        module(*batches[0].tensors)
        t0, c0 = time.perf_counter(), cpu_seconds()
        for b in batches:
            module(*b.tensors)
    return time.perf_counter() - t0, cpu_seconds() - c0


@dataclass
class JobClock:
    """Seconds from sending the POST to the first poll that saw each phase or status."""

    seen: dict[str, float] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    sent_at: float = 0.0

    def mark(self, label: str, t: float) -> None:
        self.seen.setdefault(label, t)

    def span(self, start: str, end: str) -> float | None:
        a, b = self.seen.get(start), self.seen.get(end)
        return None if a is None or b is None else b - a


def follow(c: httpx.Client, job_id: int, worker: Worker, clock: JobClock) -> dict[str, Any]:
    """Poll the job until it ends; mark each progress phase/step and status on ``clock``."""
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        t = time.perf_counter() - clock.sent_at
        if r.status_code != 200:
            raise StackError(f"GET /v1/jobs/{job_id} answered {r.status_code}: {r.text}")
        job: dict[str, Any] = r.json()
        clock.mark(job["status"], t)
        doc = job.get("progress")
        if doc is not None and job["status"] not in FINAL:
            step = doc.get("step")
            clock.mark(doc["phase"] if step is None else f"{doc['phase']}:{step}", t)
        if job["status"] in FINAL:
            if job["status"] != "succeeded":
                raise StackError(f"job {job_id} {job['status']}: {job}\n{worker.log()}")
            clock.job = job
            return job
        if t > JOB_TIMEOUT_S:
            raise StackError(f"job {job_id} still {job['status']} after {t:.0f}s\n{worker.log()}")
        time.sleep(POLL_S)


def run_job(
    work: Path, model: Path, data: Path, body: dict[str, Any], out: Path
) -> tuple[JobClock, dict[str, Any]]:
    """Start the stack, upload, run the job to success, download ``model.mpq`` to ``out``."""
    clock = JobClock()
    with (
        start_api(work / "stack") as stack,
        start_worker(stack, "effgoal", concurrency=1) as worker,
        stack.client() as c,
    ):
        model_id, dataset_id = upload(c, model, data, "efficientnet-lite2")
        clock.sent_at = time.perf_counter()
        r = c.post("/v1/jobs", json={"model_id": model_id, "dataset_id": dataset_id, **body})
        if r.status_code != 202:
            raise StackError(f"POST /v1/jobs answered {r.status_code}: {r.text}")
        job = follow(c, int(r.json()["id"]), worker, clock)
        clock.mark("done", time.perf_counter() - clock.sent_at)
        r = c.get(f"/v1/jobs/{job['id']}/artifacts/model.mpq")
        if r.status_code != 200:
            raise StackError(f"model.mpq download answered {r.status_code}: {r.text}")
        out.write_bytes(r.content)
    return clock, job


def heldout_figures(ev: Any, artifact: Path, seed: int) -> dict[str, Any]:
    """Agreement and mean KL of ``artifact`` on the evaluator's held-out split, with 95% CIs."""
    module = load_artifact(artifact).module()
    with torch.no_grad():
        out = torch.cat([b.unpad(module(*b.tensors)) for b in ev.heldout_batches])
    ref = torch.cat(ev.heldout_reference)
    kl_per = METRICS["kl"].per_sample
    assert kl_per is not None
    return {
        "samples": int(out.shape[0]),
        "agreement": agreement(out, ref),
        "agreement_ci": metric_interval("agreement", out, ref, seed=seed),
        "kl": kl_divergence(out, ref),
        "kl_ci": bootstrap_interval(kl_per(out, ref), seed=seed),
    }


def _stamp(job: dict[str, Any], name: str) -> datetime | None:
    value = job.get(name)
    return None if value is None else datetime.fromisoformat(value)


def _secs(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def _f(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(
    clock: JobClock,
    held: dict[str, Any],
    float_s: dict[str, tuple[float, float]],
    args: argparse.Namespace,
) -> None:
    """Print the phases, the chosen plan, the held-out figures and each goal's verdict."""
    job = clock.job
    result, chosen = job["result"], job["result"]["chosen"]
    created, started, finished = (
        _stamp(job, n) for n in ("created_at", "started_at", "finished_at")
    )
    prepare, wall = _secs(created, started), _secs(created, finished)
    steps = ["queued", "preparing:loading", "preparing:calibrating", "preparing:sensitivity"]
    steps += ["preparing:seeding", "searching", "finalizing", "succeeded"]
    seen = [s for s in steps if s in clock.seen]
    parts = [f"{a.split(':')[-1]} {_f(clock.span(a, b))}" for a, b in itertools.pairwise(seen)]
    say(f"phases (polled every {POLL_S} s, s): " + ", ".join(parts))
    search_s = clock.span("searching", "finalizing")
    fin_poll = clock.span("finalizing", "succeeded")
    fin_worker = result["timings"].get("finalize_s")
    say(
        f"job row: prepare {_f(prepare)} s (created -> started: queue + preparing), search "
        f"{_f(search_s)} s, finalize {_f(fin_poll)} s polled ({_f(fin_worker)} s in "
        f"search.finalize), wall {_f(wall)} s (created -> finished)"
    )
    share = None if prepare is None or wall is None else prepare / wall
    (eval_s, eval_cpu), (search_s, search_cpu) = float_s["evaluation"], float_s["search"]
    say(
        f"model cost: one float evaluation {eval_s:.2f} s ({eval_cpu:.2f} CPU s, {args.eval} "
        f"images), search split {search_s:.2f} s ({search_cpu:.2f} CPU s); job prepare / "
        "float evaluation (wall) = "
        f"{_f(None if prepare is None else prepare / eval_s)}"
    )
    float_bytes = result["baseline"]["bytes"]
    ratio = chosen["compression"]
    say(
        f"chosen: {chosen['payload_bytes']:,} B of fp32 {float_bytes:,} B ({ratio:.2f}x), file "
        f"{chosen['file_bytes']:,} B; {args.metric} search {chosen['metric']:.4f}; job "
        f"met_targets {result['met_targets']} (met_on_search {result['met_on_search']})"
    )
    whole = chosen["metrics"]
    say(
        "whole evaluation split (chosen.metrics): "
        + ", ".join(f"{k} {v:.4f}" for k, v in whole.items())
    )
    job_held = chosen["heldout"] or {}
    a_lo, a_hi = held["agreement_ci"] or (float("nan"), float("nan"))
    k_lo, k_hi = held["kl_ci"]
    mine = held["kl" if args.metric == "kl" else "agreement"]
    say(
        f"held out ({held['samples']} images): agreement {held['agreement']:.4f} "
        f"[{a_lo:.4f}, {a_hi:.4f}], KL {held['kl']:.5f} [{k_lo:.5f}, {k_hi:.5f}] (job's "
        f"chosen.heldout.metric {job_held.get('metric', float('nan')):.6g}, here {mine:.6g})"
    )
    uni = ", ".join(
        f"{u['plan']} {u['bytes']:,} B {u['metric']:.4f}"
        + ("" if u["trial"] is not None else " (not a trial)")
        for u in result["uniform"]
    )
    say(f"uniform baselines ({args.metric}, search split): {uni}")
    reasons: dict[str, int] = {}
    for why in chosen["float_layers"].values():
        reasons[why] = reasons.get(why, 0) + 1
    say(
        f"integer-only: {chosen['integer_only']}, {chosen['integer_ready_layers']} layers "
        f"integer-ready, {len(chosen['float_layers'])} float ({reasons or 'none'}); "
        f"integer-only {args.metric} held out {job_held.get('integer_metric', float('nan')):.4f}"
    )
    if result.get("message"):
        say(f"job message: {result['message']}")
    say(
        f"goals: >= {GOAL_RATIO}x {_verdict(ratio >= GOAL_RATIO)} ({ratio:.2f}x); held-out "
        f"agreement >= {GOAL_AGREEMENT} {_verdict(held['agreement'] >= GOAL_AGREEMENT)}; "
        f"held-out KL <= {GOAL_KL} {_verdict(held['kl'] <= GOAL_KL)}; wall <= "
        f"{GOAL_WALL_S:.0f} s {_verdict(wall is not None and wall <= GOAL_WALL_S)} "
        f"({_f(wall)} s); prepare <= {GOAL_PREPARE_SHARE:.0%} of it "
        f"{_verdict(share is not None and share <= GOAL_PREPARE_SHARE)} ({_f(share, '.1%')})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calib", type=int, default=CALIB, help="calibration crops")
    parser.add_argument("--eval", type=int, default=EVAL, help="evaluation crops")
    parser.add_argument("--holdout", type=float, default=HOLDOUT)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--metric", choices=("kl", "agreement"), default="kl")
    parser.add_argument("--activations", default="float", help="e.g. float or float,a8")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mpq-bench-effgoal"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the workers run
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(f"command: {' '.join(sys.orig_argv)}")
    say(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, Python "
        f"{platform.python_version()}, load avg {load}"
    )
    args.work.mkdir(parents=True, exist_ok=True)
    model, data = build(args.work, args.calib, args.eval)
    body = job_body(
        metric=args.metric,
        activations=args.activations.split(","),
        trials=args.trials,
        holdout=args.holdout,
    )
    say(f"job: {body}")
    artifact = args.work / "model.mpq"
    clock, _ = run_job(args.work, model, data, body, artifact)
    say(f"job done in {clock.seen['done']:.1f} s; scoring model.mpq held out here ...")
    spec = JobSpec.from_json(body)
    ev = open_evaluator(spec.search_config(model=str(model), data=str(data)), trust_uploads=True)
    float_s = {
        "evaluation": float_eval_seconds(ev.ir, list(ev.whole.batches("evaluation"))),
        "search": float_eval_seconds(ev.ir, ev.batches),
    }
    held = heldout_figures(ev, artifact, spec.seed)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(f"load avg after: {load}")
    report(clock, held, float_s, args)


if __name__ == "__main__":
    main()
