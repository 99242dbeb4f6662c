"""``mpq search MODEL --data DATA --metric M [targets] [space] --out DIR [--json]``.

Runs the mixed-precision search (:mod:`search`) in this process, or with
``--workers N`` in N processes sharing one study (an SQLite file in the output
directory, or ``--storage URL``). Writes ``result.json``, ``model.mpq``,
``pareto.png`` and ``layers.png`` into ``--out``. On a terminal a progress line
shows trials done and the best plan meeting the targets so far; ``--json``
prints only the result summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.errors import FileMissingError

__all__ = ["add_search_command"]

_STUDY = "mpq-search"
_WORKER = [sys.executable, "-m", "service.cli", "search-worker", "--name", _STUDY]
_FILES = ("result.json", "model.mpq", "pareto.png", "layers.png")


def add_search_command(subparsers: Any) -> None:
    """Register ``search`` (and the internal ``search-worker``) on the ``mpq`` parser."""
    p = subparsers.add_parser("search", help="search per-layer formats for a target")
    p.add_argument("model", type=Path, help="a .pt2 or .onnx model")
    p.add_argument("--data", type=Path, required=True, help=".npz or .safetensors data")
    p.add_argument("--metric", choices=["accuracy", "agreement", "cosine", "sqnr"])
    drop = p.add_mutually_exclusive_group()
    drop.add_argument("--max-drop", type=float, help="largest metric drop allowed (absolute)")
    drop.add_argument("--max-drop-rel", type=float, help="largest relative metric drop")
    p.add_argument("--min-metric", type=float, help="lowest metric allowed (e.g. cosine 0.99)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--max-bytes", help="largest payload, e.g. 8KB, 11.4MB (KB = 1000 B)")
    size.add_argument("--min-ratio", type=float, help="smallest compression vs the float model")
    p.add_argument("--space", help="weight formats, e.g. int2,int3,int4,int6,int8,cb16")
    p.add_argument("--rounding", default="nearest,gptq", help="roundings to search")
    p.add_argument("--activation", default="a8", help="activation formats to search (a4,a8,...)")
    p.add_argument(
        "--pin", action="append", default=[], help="PATTERN=FORMAT, e.g. classifier=int8"
    )
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--timeout", type=float, help="seconds each worker may run trials")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sampler", choices=["tpe", "nsga2", "random"], default="tpe")
    p.add_argument("--storage", help="Optuna storage URL (default: in memory, or SQLite in --out)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--json", action="store_true", help="print the result summary as JSON")
    p.set_defaults(func=_search)
    w = subparsers.add_parser("search-worker", help=argparse.SUPPRESS)
    w.add_argument("--storage", required=True)
    w.add_argument("--name", default=_STUDY)
    w.add_argument("--worker", type=int, required=True)
    w.set_defaults(func=_worker)


def _search(args: argparse.Namespace) -> int:
    import torch

    from engine.io.importers import sha256_file
    from search import SearchConfig, SearchSpace, Targets, parse_bytes, run_trials
    from search._run import create_search, finalize, open_evaluator

    for path in (args.model, args.data):
        if not path.is_file():
            raise FileMissingError(f"no such file: {str(path)!r}")
    if args.workers > 1:
        torch.set_num_threads(1)
    space = SearchSpace.parse(
        args.space,
        pins=args.pin,
        roundings=tuple(r.strip() for r in args.rounding.split(",") if r.strip()),
        activations=tuple(a.strip() for a in args.activation.split(",") if a.strip()),
    )
    targets = Targets(
        max_drop=args.max_drop,
        max_drop_rel=args.max_drop_rel,
        min_metric=args.min_metric,
        max_bytes=parse_bytes(args.max_bytes) if args.max_bytes else None,
        min_ratio=args.min_ratio,
    )
    metric = args.metric or "accuracy"
    config = SearchConfig(
        model=str(args.model.resolve()),
        data=str(args.data.resolve()),
        metric=metric,
        targets=targets,
        space=space,
        trials=args.trials,
        timeout_s=args.timeout,
        seed=args.seed,
        sampler=args.sampler,
        cache_dir=os.environ.get("MPQ_CACHE_DIR", str(Path.home() / ".cache" / "mpq")),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    storage = args.storage
    if storage is None and args.workers > 1:
        db = args.out / "study.db"
        db.unlink(missing_ok=True)
        storage = f"sqlite:///{db.resolve()}"
    t0 = time.perf_counter()
    ev = open_evaluator(config, trust_uploads=_trusted())
    search = create_search(config, ev, storage_url=storage, name=_STUDY)
    t_setup = time.perf_counter() - t0
    procs = [
        subprocess.Popen([*_WORKER, "--storage", str(storage), "--worker", str(w)])
        for w in range(1, args.workers)
    ]
    show = not args.json and sys.stderr.isatty()
    progress = _Progress(config.trials, search.baseline) if show else None
    t1 = time.perf_counter()
    run_trials(search, ev, worker=0, on_trial=progress)
    failed = [p.wait() for p in procs]
    if progress is not None:
        progress.done()
    if any(failed):
        print(f"warning: {sum(1 for c in failed if c)} worker process(es) failed", file=sys.stderr)
    t_trials = time.perf_counter() - t1
    result = finalize(
        search, ev, args.out, source_sha256=sha256_file(args.model),
        timings={"setup_s": t_setup, "trials_s": t_trials},
    )  # fmt: skip
    summary = _summary(result, args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary)
    return 0


def _worker(args: argparse.Namespace) -> int:
    import torch

    from search import run_trials
    from search._run import join_search, open_evaluator

    torch.set_num_threads(1)
    search = join_search(args.storage, args.name, worker=args.worker)
    ev = open_evaluator(search.config, trust_uploads=_trusted())
    run_trials(search, ev, worker=args.worker)
    return 0


def _summary(result: dict[str, Any], out: Path) -> dict[str, Any]:
    trials = result["trials"]
    return {
        "met_targets": result["met_targets"],
        "message": result.get("message"),
        "baseline": result["baseline"],
        "targets": result["targets"],
        "chosen": result["chosen"],
        "trials": {
            "total": len(trials),
            "complete": sum(1 for t in trials if t["state"] == "complete"),
            "pruned": sum(1 for t in trials if t["state"] == "pruned"),
            "feasible": sum(1 for t in trials if t["feasible"]),
        },
        "front": len(result["front"]),
        "evaluations_until_target": result["evaluations_until_target"],
        "timings": result["timings"],
        "files": {
            n: str(out / n) for n in ("result.json", "model.mpq", "pareto.png", "layers.png")
        },
    }


def _print(s: dict[str, Any]) -> None:
    base = s["baseline"]
    print(f"float: {base['metric']:.4f}, {base['bytes']:,} bytes")
    t = s["trials"]
    print(
        f"trials: {t['total']} ({t['complete']} complete, {t['pruned']} pruned, "
        f"{t['feasible']} meeting the targets); front of {s['front']}"
    )
    c = s["chosen"]
    if c is not None:
        print(
            f"chosen (trial {c['trial']}): metric {c['metric']:.4f} (integer-only "
            f"{c['integer_metric']:.4f}, {c['integer_only']}), {c['payload_bytes']:,} payload "
            f"bytes ({c['compression']:.1f}x), {c['file_bytes']:,} file bytes"
        )
    if s["message"]:
        print(f"note: {s['message']}")
    print(f"wrote {', '.join(s['files'].values())}")


class _Progress:
    """One status line on stderr: trials done, best plan meeting the targets so far."""

    def __init__(self, total: int, baseline: float) -> None:
        self.total, self.baseline, self.done_count = total, baseline, 0
        self.best: tuple[int, float] | None = None

    def __call__(self, record: Any) -> None:
        self.done_count += 1
        if record.feasible and (self.best is None or record.bytes < self.best[0]):
            self.best = (record.bytes, record.metric)
        best = (
            f"best {self.best[0]:,} B @ {self.best[1]:.4f}"
            if self.best
            else "no plan meets the targets yet"
        )
        print(
            f"\rtrials {self.done_count}/{self.total}  {best}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def done(self) -> None:
        print(file=sys.stderr)


def _trusted() -> bool:
    return os.environ.get("MPQ_TRUST_UPLOADS") == "1"
