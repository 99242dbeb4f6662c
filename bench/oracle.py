"""The exact optimum of the search space on the digits CNN, and how close ``mpq search`` gets.

Run: ``.venv/bin/python bench/oracle.py [--model PT2 --data NPZ] [--max-drop 0.01]
[--seeds 0,1,2,3,4] [--trials N] [--split NPY] [--check 50] [--all] [--no-search]
[--work DIR] [--save NPZ]``

The oracle (:mod:`bench._oracle`) scores plans of the search's default space
(``SearchSpace()``: 10 weight formats x nearest/GPTQ rounding x a8, 19 choices per
layer; the digits CNN's 4 layers give 19^4 = 130,321 plans) with exactly the engine's
simulated evaluation (:meth:`search.Evaluator.evaluate` on the whole split), sharing
layer outputs along a depth-first walk over the layers. It finds the smallest payload
meeting the target (``metric >= baseline - max_drop``) in rounds of growing byte
budgets: round ``r`` scores every plan of at most ``B_r`` bytes (``B_r``: the
``1024 * 4^r``-th smallest plan); once one meets the target, the smallest that does is
the optimum, proven by every smaller plan having been scored and missed.
``--all`` scores all 130,321 plans instead (and counts those meeting the target);
``--save`` writes every plan's bytes and metric (plan ``i`` is ``np.unravel_index(i,
[19] * 4)`` over the layers' choices in ``SearchSpace().choices`` order).

Exactness is checked, not assumed: ``--check`` random plans and the optimum are scored
by ``Evaluator.evaluate`` and ``Evaluator.payload_bytes`` too, and the script asserts
equality of both figures and prints the check.

Then the search runs the way ``mpq search`` runs it (``JobSpec(...).search_config`` with
the default budget of ``JobSpec().trials`` trials, ``open_evaluator`` + ``create_search``
+ ``run_trials`` + ``finalize``, a cold sensitivity cache, one thread), once per seed,
timed from opening the model to the written ``model.mpq``. Per seed: the chosen plan's
payload (measured on the written file), its ratio to the optimum (goal <= 1.05), the
search's seconds (goal <= 60), and the trials until a trial first met the target within
1.05x of the optimum.

The split. The oracle scores the evaluator's evaluation batches (``ev.batches``):
today the data file's whole evaluation split, the same one the search's trials score.
``--split PATH`` (a ``.npy`` of sample indices, int, or a boolean mask over those
evaluation samples) scores only those samples instead: an :class:`~search.Evaluator` is
built on ``Split.select(indices)`` (rebatched, padded as any evaluation split), its
float baseline sets the floor, and the exactness check runs against that evaluator.
The search itself still runs on the whole file; its chosen plan is then also scored on
the split (the "trials to 1.05x" count still uses the trials' own feasibility, on the
search's data). When the search sets a held-out part of the evaluation samples apart, an
evaluator's ``batches`` are its search split, so the oracle without ``--split`` finds
the optimum on what trials score; for the held-out figure pass the held-out indices.

Threads: ``torch.set_num_threads(1)`` (the figures in bench/README.md were measured so).

Size: over 300 lines like ``bench/search.py``: the command line, the split, the searches
and the table printed from them; the oracle itself is ``bench/_oracle.py``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The repository root goes first: this file's own directory, which Python puts on the
# path, holds a module named like the ``search`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._oracle import Oracle, check_exact, find_optimum
from search import (
    Evaluator,
    JobSpec,
    Targets,
    create_search,
    finalize,
    open_evaluator,
    run_trials,
    trial_records,
)

GOAL_RATIO = 1.05
GOAL_SECONDS = 60.0
ROOT = Path(__file__).resolve().parent.parent


def say(msg: str) -> None:
    print(msg, flush=True)


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children.

    The machine the figures come from is shared, so wall time carries other work's
    load; CPU time says what the search itself costs.
    """
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass
class SearchRun:
    """One search: the chosen plan's figures and the time it took."""

    seed: int
    payload: int | None
    metric: float | None
    split_metric: float | None
    seconds: dict[str, float]
    trials_to_near: int | None
    trials: int
    optimum: int | None = None
    """The oracle's optimum on this search's own search split."""
    heldout: float | None = None
    met_heldout: bool = False


def split_evaluator(ev: Evaluator, path: Path) -> Evaluator:
    """An evaluator of the same model on the evaluation samples ``path`` names."""
    sel = np.load(path)
    n = ev.data.evaluation.num_samples
    if sel.dtype == np.bool_:
        if sel.shape != (n,):
            sys.exit(f"--split: a boolean mask needs {n} entries, got shape {sel.shape}")
        sel = np.flatnonzero(sel)
    if sel.ndim != 1 or not np.issubdtype(sel.dtype, np.integer) or len(sel) == 0:
        sys.exit("--split: give a non-empty 1-D array of sample indices or a boolean mask")
    if sel.min() < 0 or sel.max() >= n:
        sys.exit(f"--split: indices must lie in [0, {n})")
    index = torch.from_numpy(sel.astype(np.int64))
    data = replace(ev.data, evaluation=ev.data.evaluation.select(index))
    return Evaluator(ev.ir, data, ev.metric, chunks=(1.0,))


def run_search(
    spec: JobSpec, model: Path, data: Path, out: Path, split: Evaluator | None
) -> SearchRun:
    """``mpq search`` in-process, timed; then the oracle's optimum on the search's own split.

    The held-out split is seeded by the job's seed, so each seed's trials score their own
    search split: the optimum compared with is found (untimed) on that same split, and
    the chosen plan's held-out figure says whether the target holds on new data.
    """
    config = spec.search_config(model=str(model), data=str(data), cache_dir=None)
    times: dict[str, float] = {}
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    ev = open_evaluator(config)
    times["open"] = time.perf_counter() - t0
    t = time.perf_counter()
    search = create_search(config, ev)
    times["setup"] = time.perf_counter() - t
    t = time.perf_counter()
    run_trials(search, ev)
    times["trials"] = time.perf_counter() - t
    t = time.perf_counter()
    result = finalize(search, ev, out)
    times["finalize"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    times["cpu"] = cpu_seconds() - cpu0
    floor = config.targets.metric_floor(ev.baseline)
    assert floor is not None
    optimum, _ = find_optimum(Oracle(ev, config.space), floor)
    records = sorted(trial_records(search), key=lambda r: r.number)
    near = None
    if optimum.bytes is not None:
        near = next(
            (
                i + 1
                for i, r in enumerate(records)
                if r.feasible and r.bytes <= GOAL_RATIO * optimum.bytes
            ),
            None,
        )
    chosen = result["chosen"]
    if chosen is None:
        return SearchRun(spec.seed, None, None, None, times, near, len(records), optimum.bytes)
    split_metric = None
    if split is not None:
        plan = config.space.plan(_chosen_choices(result))
        split_metric = split.evaluate(plan).value
    heldout = chosen.get("heldout") or {}
    return SearchRun(
        spec.seed,
        chosen["payload_bytes"],
        chosen["metric"],
        split_metric,
        times,
        near,
        len(records),
        optimum.bytes,
        heldout.get("metric"),
        bool(result["met_targets"]),
    )


def _chosen_choices(result: dict[str, Any]) -> dict[str, str]:
    """The chosen trial's choice keys (from its record in ``result["trials"]``)."""
    number = result["chosen"]["trial"]
    return next(t["plan"] for t in result["trials"] if t["number"] == number)


def print_check(rows: list[tuple[int, float, float, int, int]]) -> None:
    same_metric = sum(1 for r in rows if r[1] == r[2])
    same_bytes = sum(1 for r in rows if r[3] == r[4])
    say(
        f"exactness check on {len(rows)} plans ({len(rows) - 1} random + the optimum): "
        f"metric equal to Evaluator.evaluate(plan).value in {same_metric}/{len(rows)}, "
        f"bytes equal to Evaluator.payload_bytes(plan) in {same_bytes}/{len(rows)}"
    )
    for flat, mine, engine, nbytes, _ in rows[-3:]:
        say(f"  plan {flat:>6}: oracle {mine:.6f}, engine {engine:.6f}, {nbytes:,} B")
    assert same_metric == len(rows) and same_bytes == len(rows), "the oracle is not exact"


def print_table(runs: list[SearchRun], float_bytes: int) -> None:
    say("")
    say(
        "| seed | optimum B (its search split) | chosen B | / optimum | top-1 search (held-out) "
        "| target held out | search s (open + setup + trials + finalize) | CPU s "
        "| trials to <= 1.05x | goals |"
    )
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for r in runs:
        s = r.seconds
        parts = f"{s['open']:.1f} + {s['setup']:.1f} + {s['trials']:.1f} + {s['finalize']:.1f}"
        if r.payload is None or r.optimum is None:
            say(f"| {r.seed} | {r.optimum} | none | | | | {s['total']:.1f} ({parts}) | | | |")
            continue
        ratio = r.payload / r.optimum
        ratios.append(ratio)
        goals = (
            f"ratio {'met' if ratio <= GOAL_RATIO else 'MISSED'}, "
            f"time {'met' if s['total'] <= GOAL_SECONDS else 'MISSED'}"
        )
        near = "never" if r.trials_to_near is None else str(r.trials_to_near)
        metric = f"{r.metric:.4f}"
        if r.heldout is not None:
            metric += f" ({r.heldout:.4f})"
        if r.split_metric is not None:
            metric += f" (--split {r.split_metric:.4f})"
        say(
            f"| {r.seed} | {r.optimum:,} | {r.payload:,} | {ratio:.3f}x | {metric} "
            f"| {'yes' if r.met_heldout else 'no'} | {s['total']:.1f} ({parts}) "
            f"| {s['cpu']:.1f} | {near} of {r.trials} | {goals} |"
        )
    if ratios:
        say(
            f"\nsearch / optimum: median {np.median(ratios):.3f}x, best {min(ratios):.3f}x, "
            f"worst {max(ratios):.3f}x; {sum(x <= GOAL_RATIO for x in ratios)}/{len(ratios)} "
            f"seeds within {GOAL_RATIO}x (fp32: {float_bytes:,} B)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=ROOT / "examples/out/digits.pt2")
    parser.add_argument("--data", type=Path, default=ROOT / "examples/out/digits.npz")
    parser.add_argument("--max-drop", type=float, default=0.01, help="accuracy drop (0.01 = 1 pt)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="search seeds, comma-separated")
    parser.add_argument("--trials", type=int, default=JobSpec().trials, help="search budget")
    parser.add_argument("--split", type=Path, help=".npy: evaluation sample indices or mask")
    parser.add_argument("--check", type=int, default=50, help="random plans checked vs engine")
    parser.add_argument("--all", action="store_true", help="score every plan of the space")
    parser.add_argument("--no-search", action="store_true", help="the oracle only")
    parser.add_argument("--work", type=Path, help="search outputs (default: a temp dir)")
    parser.add_argument(
        "--save", type=Path, help=".npz: every plan's bytes and metric (NaN: unscored)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.model.is_file() or not args.data.is_file():
        say(f"building the digits example into {args.model.parent} (examples/digits.py)")
        out = str(args.model.parent)
        subprocess.run([sys.executable, str(ROOT / "examples/digits.py"), "--out", out], check=True)
    spec = JobSpec(metric="accuracy", targets=Targets(max_drop=args.max_drop), trials=args.trials)
    config = spec.search_config(model=str(args.model), data=str(args.data))

    t0 = time.perf_counter()
    ev = open_evaluator(config)
    split = split_evaluator(ev, args.split) if args.split is not None else None
    scored_ev = split if split is not None else ev
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    oracle = Oracle(scored_ev, config.space)
    t_prep = time.perf_counter() - t0
    floor = config.targets.metric_floor(scored_ev.baseline)
    assert floor is not None
    say(
        f"{len(oracle.layers)} layers x {len(oracle.choices[0])} choices = "
        f"{oracle.n_plans:,} plans "
        f"({', '.join(oracle.layers)}); {sum(b.n_valid for b in oracle.batches)} evaluation "
        f"samples{' (--split)' if split is not None else ''} in {len(oracle.batches)} batches; "
        f"fp32 top-1 {scored_ev.baseline:.4f}, floor {floor:.4f}; "
        f"open {t_open:.1f}s, weights + stages {t_prep:.1f}s"
    )
    t0 = time.perf_counter()
    if args.all:
        scores = oracle.scores()
        t_all = time.perf_counter() - t0
        meets = int((floor - scores <= 0).sum())
        say(f"all {oracle.n_plans:,} plans scored in {t_all:.1f}s; {meets:,} meet the floor")
        opt, scores = find_optimum(oracle, floor, scores=scores)
    else:
        opt, scores = find_optimum(oracle, floor, say=say)
    t_opt = time.perf_counter() - t0
    if opt.flat is None or opt.bytes is None:
        say(f"no plan of the space meets the floor {floor:.4f}")
        return
    plan = oracle.plan_of(opt.flat)
    say(
        f"optimum: {opt.bytes:,} B, top-1 {opt.metric:.4f}, {plan}\n"
        f"  proof: all {opt.below:,} smaller plans scored, none meets the floor; "
        f"{opt.scored:,} of {oracle.n_plans:,} plans scored ({opt.scored / oracle.n_plans:.1%}) "
        f"in {opt.rounds} round(s), {t_opt:.1f}s"
    )
    if args.save is not None:
        np.savez(args.save, bytes=oracle.plan_bytes(), metric=scores, floor=floor)
    near = int(GOAL_RATIO * opt.bytes)
    if opt.budget >= near:
        nbytes = oracle.plan_bytes()
        within = nbytes <= near
        hits = int((within & (floor - scores <= 0)).sum())
        say(
            f"  plans of <= {GOAL_RATIO}x the optimum ({near:,} B): {int(within.sum()):,}, "
            f"of which {hits:,} meet the floor ({hits / oracle.n_plans:.3%} of the space)"
        )
    rng = np.random.default_rng(0)
    sample = [int(f) for f in rng.choice(oracle.n_plans, args.check, replace=False)]
    rows, engine_s = check_exact(oracle, scores, [*sample, opt.flat])
    print_check(rows)
    per = engine_s / len(rows)
    say(
        f"  Evaluator.evaluate: {per * 1e3:.0f} ms per plan; every plan that way: "
        f"{per * oracle.n_plans / 3600:.1f} h (the oracle above: {t_opt:.1f}s)"
    )
    if args.no_search:
        return
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for seed in (int(s) for s in args.seeds.split(",")):
            run = run_search(
                replace(spec, seed=seed), args.model, args.data, work / str(seed), split
            )
            say(
                f"seed {seed}: {run.payload} B, {run.seconds['total']:.1f}s, "
                f"<= {GOAL_RATIO}x after {run.trials_to_near} trials"
            )
            runs.append(run)
    print_table(runs, ev.float_bytes)


if __name__ == "__main__":
    main()
