"""``mpq search MODEL --data DATA [job spec flags] --out DIR [--json]``.

The job spec flags (:mod:`commands.spec_flags`) build the same :class:`~search.JobSpec`
as the body of ``POST /v1/jobs``. Runs the mixed-precision search (:mod:`search`) in
this process, or with ``--parallelism N`` (``--workers N``) in N processes sharing one
study (an SQLite file in the output directory, or ``--storage URL``). Writes
``result.json``, ``model.mpq``, ``pareto.png`` and ``layers.png`` into ``--out``. On a
terminal a progress line shows the phase, as a service job's does (``preparing:
sensitivity 12/50``; then ``searching: 8/40, ~1m05s left`` with the best plan meeting
the targets so far); the final summary gives each metric on the search split and, beside
it, on the held-out split with its 95% interval (``--holdout``); ``--json`` prints only
the result summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from commands.spec_flags import add_spec_flags, spec_from_args
from engine.errors import FileMissingError
from service.progress import Throttle, describe, eta_seconds, progress_doc
from service.settings import get_settings

__all__ = ["add_search_command"]

_STUDY = "mpq-search"
_WORKER = [sys.executable, "-m", "commands", "search-worker", "--name", _STUDY]
_FILES = ("result.json", "model.mpq", "model.onnx", "pareto.png", "layers.png")
CLEAR_LINE = "\x1b[K"
"""ANSI: erase to the end of the line (a shorter status line leaves nothing behind)."""


def add_search_command(subparsers: Any) -> None:
    """Register ``search`` (and the internal ``search-worker``) on the ``mpq`` parser."""
    p = subparsers.add_parser("search", help="search per-layer formats for a target")
    p.add_argument("model", type=Path, help="a .pt2 or .onnx model")
    p.add_argument("--data", type=Path, required=True, help=".npz or .safetensors data")
    add_spec_flags(p)
    p.add_argument("--storage", help="Optuna storage URL (default: in memory, or SQLite in --out)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--json", action="store_true", help="print the result summary as JSON")
    p.set_defaults(func=_search)
    # Internal (the processes of --parallelism): registered without help=, which keeps it
    # out of ``mpq --help``'s listing (argparse lists a subcommand even with help=SUPPRESS).
    w = subparsers.add_parser("search-worker")
    w.add_argument("--storage", required=True)
    w.add_argument("--name", default=_STUDY)
    w.add_argument("--worker", type=int, required=True)
    w.set_defaults(func=_worker)


def _search(args: argparse.Namespace) -> int:
    import torch

    from engine.io.importers import sha256_file
    from search import create_search, finalize, open_evaluator, run_trials
    from search import progress as progress_of

    for path in (args.model, args.data):
        if not path.is_file():
            raise FileMissingError(f"no such file: {str(path)!r}")
    spec = spec_from_args(args)
    if spec.parallelism > 1:
        torch.set_num_threads(1)
    settings = get_settings()
    config = spec.search_config(
        model=str(args.model.resolve()),
        data=str(args.data.resolve()),
        cache_dir=str(settings.cache_dir),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    storage = args.storage
    if storage is None and spec.parallelism > 1:
        db = args.out / "study.db"
        db.unlink(missing_ok=True)
        storage = f"sqlite:///{db.resolve()}"
    show = not args.json and sys.stderr.isatty()
    line = _ProgressLine(config.trials, spec.parallelism, config.timeout_s) if show else None
    on_step = None if line is None else line.step
    t0 = time.perf_counter()
    ev = open_evaluator(config, trust_uploads=settings.trust_uploads, on_step=on_step)
    search = create_search(config, ev, storage_url=storage, name=_STUDY, on_step=on_step)
    t_setup = time.perf_counter() - t0
    procs = [
        subprocess.Popen([*_WORKER, "--storage", str(storage), "--worker", str(w)])
        for w in range(1, spec.parallelism)
    ]
    progress = None if line is None else line.searching(lambda: progress_of(search).done)
    t1 = time.perf_counter()
    run_trials(search, ev, worker=0, on_trial=progress)
    failed = [p.wait() for p in procs]
    if line is not None:
        line.done()
    if any(failed):
        print(f"warning: {sum(1 for c in failed if c)} worker process(es) failed", file=sys.stderr)
    t_trials = time.perf_counter() - t1
    result = finalize(
        search,
        ev,
        args.out,
        source_sha256=sha256_file(args.model),
        timings={"setup_s": t_setup, "trials_s": t_trials},
    )
    summary = _summary(result, args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary)
    return 0


def _worker(args: argparse.Namespace) -> int:
    import torch

    from search import join_search, open_evaluator, run_trials

    torch.set_num_threads(1)
    search = join_search(args.storage, args.name, worker=args.worker)
    ev = open_evaluator(search.config, trust_uploads=get_settings().trust_uploads)
    run_trials(search, ev, worker=args.worker)
    return 0


def _summary(result: dict[str, Any], out: Path) -> dict[str, Any]:
    trials = result["trials"]
    return {
        "met_targets": result["met_targets"],
        "met_on_search": result["met_on_search"],
        "message": result.get("message"),
        "baseline": result["baseline"],
        "targets": result["targets"],
        "chosen": result["chosen"],
        "holdout": result["holdout"],
        "trials": {
            "total": len(trials),
            "complete": sum(1 for t in trials if t["state"] == "complete"),
            "pruned": sum(1 for t in trials if t["state"] == "pruned"),
            "feasible": sum(1 for t in trials if t["feasible"]),
        },
        "front": len(result["front"]),
        "evaluations_until_target": result["evaluations_until_target"],
        "timings": result["timings"],
        "files": {n: str(out / n) for n in _FILES if (out / n).is_file()},
    }


def _held(figure: dict[str, Any] | None) -> str:
    """``", held-out 0.9778 [0.9367, 0.9924] (135 samples)"``, or nothing without one."""
    if figure is None:
        return ""
    ci = figure["ci"]
    interval = "" if ci is None else f" [{ci[0]:.4f}, {ci[1]:.4f}]"
    return f"; held-out {figure['metric']:.4f}{interval} ({figure['samples']} samples)"


def _print(s: dict[str, Any]) -> None:
    base = s["baseline"]
    print(
        f"float: search {base['metric']:.4f}{_held(base.get('heldout'))}, {base['bytes']:,} bytes"
    )
    t = s["trials"]
    print(
        f"trials: {t['total']} ({t['complete']} complete, {t['pruned']} pruned, "
        f"{t['feasible']} meeting the targets); front of {s['front']}"
    )
    c = s["chosen"]
    if c is not None:
        print(
            f"chosen (trial {c['trial']}): search {c['metric']:.4f}{_held(c.get('heldout'))} "
            f"(integer-only {c['integer_metric']:.4f} on search, {c['integer_only']}), "
            f"{c['payload_bytes']:,} payload bytes ({c['compression']:.1f}x), "
            f"{c['file_bytes']:,} file bytes"
        )
        scores = ", ".join(f"{k} {v:.4g}" for k, v in c.get("metrics", {}).items())
        print(f"on model.mpq: {scores}")
    held = "held-out split" if s["holdout"]["heldout_samples"] else "search split (none held out)"
    print(
        f"targets met on the {held}: {'yes' if s['met_targets'] else 'no'} "
        f"(search split: {'yes' if s['met_on_search'] else 'no'})"
    )
    if s["message"]:
        print(f"note: {s['message']}")
    print(f"wrote {', '.join(s['files'].values())}")


class _ProgressLine:
    """One status line on stderr: the preparation's steps, then trials, time left, best plan.

    The time left is :func:`service.progress.eta_seconds` of this process's mean wall
    seconds per trial, the trials the shared study still lacks, the parallelism and the
    timeout; steps are redrawn at most every ``REDRAW_S`` seconds.
    """

    REDRAW_S = 0.1

    def __init__(self, total: int, parallelism: int, timeout_s: float | None) -> None:
        self.total, self.parallelism, self.timeout_s = total, parallelism, timeout_s
        self.throttle = Throttle(self.REDRAW_S)
        self.count: Callable[[], int] = lambda: 0
        self.t0, self.finished = 0.0, 0
        self.best: tuple[int, float] | None = None

    def step(self, step: str, done: int, total: int) -> None:
        """``on_step`` of the preparation."""
        if self.throttle(step):
            self._draw(describe(progress_doc("preparing", step=step, done=done, total=total)))

    def searching(self, count: Callable[[], int]) -> _ProgressLine:
        """Follow the trials from now on (``count()``: finished in the shared study).

        Returns self, the ``on_trial`` callback.
        """
        self.count, self.t0 = count, time.perf_counter()
        self._draw(describe(progress_doc("searching", done=0, total=self.total)))
        return self

    def __call__(self, record: Any) -> None:
        self.finished += 1
        elapsed = time.perf_counter() - self.t0
        if record.feasible and (self.best is None or record.bytes < self.best[0]):
            self.best = (record.bytes, record.metric)
        done = self.count()
        eta = eta_seconds(
            mean_s=elapsed / self.finished,
            left=self.total - done,
            parallelism=self.parallelism,
            deadline_left_s=None if self.timeout_s is None else self.timeout_s - elapsed,
        )
        best = (
            f"best {self.best[0]:,} B @ {self.best[1]:.4f}"
            if self.best
            else "no plan meets the targets yet"
        )
        doc = progress_doc("searching", done=done, total=self.total, eta_s=eta)
        self._draw(f"{describe(doc)}  {best}")

    def _draw(self, text: str) -> None:
        print(f"\r{text}{CLEAR_LINE}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        print(file=sys.stderr)
