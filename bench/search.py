"""Mixed-precision search against plain Optuna, random search and uniform formats.

Run: ``.venv/bin/python bench/search.py [--only digits|minilm] [--trials N] [--quick]
[--prime-hessians] [--work DIR]``

Per model, with the same trial budget and seed (0), four ways to a plan:

* ``mpq``: the search as shipped -- sensitivity, ILP seeds (8 rungs), then
  multivariate TPE (``search.create_search`` + ``run_trials`` + ``finalize``);
* ``tpe``: the same study without seeding (``ilp_seeds=0``): plain Optuna TPE;
* ``random``: ``sampler="random"``, ``ilp_seeds=0``;
* uniform baselines: every layer int8, every layer int4 (GPTQ where the space
  has it), and the smallest uniform choice of the space that meets the target.

Each search opens its own evaluator (cold weight cache), so the wall times
compare. Sensitivity runs once, in ``mpq``'s setup, into a fresh cache
directory; ``tpe`` and ``random`` (``ilp_seeds=0``) do not measure it. Columns:
payload bytes of the chosen ``model.mpq``, compression (fp32 tensor bytes /
payload), the metric on the search's evaluation data (measured on the written
file), for MiniLM the metric on held-out sentences the search never saw,
evaluations until the target was first met
(``result["evaluations_until_target"]``; pruned trials count, plans pruned for
size do not), ``near``: evaluations until a plan met the target within 5% of the
smallest payload any of the three searches chose (the digits target is met by
almost any plan, so the first column alone says little there), setup
(sensitivity + ILP), trials and finalize seconds, and total (with opening the
model and data). Default budgets: 60 trials digits, 40 MiniLM; ``--quick``: 20 /
10.

``--prime-hessians`` hands each evaluator's weight cache every layer's name as a
GPTQ layer before the search starts. The search now does this itself
(``Evaluator.prime``: one calibration pass for every GPTQ-capable layer), so the
flag only matters for spaces without GPTQ choices.

Optuna overhead: the digits ``mpq`` search is run again on an SQLite storage
(WAL) without a callback; overhead = (wall time of ``run_trials`` - sum of the
trials' evaluation ``seconds``) / that sum. The in-memory run's figure is shown
beside it. Both are also given against the time spent inside
``Evaluator.evaluate`` alone (``TrialRecord.seconds`` covers the evaluation and
byte count only; storage writes come after it).

Models and data (written under ``--work``):

* digits: ``examples.digits.train()`` (seed 0, 30 epochs), exported at batch 32;
  ``calib/x``: 256 training images; evaluation: the 540 held-out images.
  Metric top-1 accuracy, target ``max_drop=0.01``. Default search space.
* MiniLM: ``examples.minilm`` exported at 32 x 64 tokens; ``bench/_sentences.py``
  gives 768 disjoint sentences: 256 calibration, 256 search evaluation, 256
  held-out. Metric: mean cosine to the fp32 embeddings, target
  ``min_metric=0.99``. Space: int4, int4g64, int5, int6, int8, cb16, cb256, GPTQ.

Threads: ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The repository root goes first: this file's own directory, which Python puts on the
# path, holds a module named like the ``search`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._sentences import digest, sentences
from engine.data import cosine
from engine.io import load_artifact
from engine.ir import to_graph_module
from engine.quant import QuantPlan
from search import (
    Evaluation,
    Evaluator,
    SearchConfig,
    SearchSpace,
    Targets,
    TrialRecord,
    create_search,
    finalize,
    open_evaluator,
    run_trials,
    trial_records,
)

THREADS = 1
BATCH = 32
SENTENCES = 256
MINILM_SPACE = SearchSpace(
    formats=("int4", "int4g64", "int5", "int6", "int8", "cb16", "cb256"), roundings=("gptq",)
)
NEAR_BEST = 1.05
"""A plan "near the best" meets the target within 5% of the smallest chosen payload."""
METHODS = (("mpq", "tpe", 8), ("tpe", "tpe", 0), ("random", "random", 0))

Batches = list[tuple[torch.Tensor, ...]]


@dataclass
class Case:
    """A model file, its data file, the target and (MiniLM) held-out batches."""

    name: str
    model: Path
    data: Path
    metric: str
    targets: Targets
    space: SearchSpace
    trials: int
    holdout: Batches = field(default_factory=list)
    prime_hessians: bool = False


@dataclass
class Row:
    """One line of the table."""

    method: str
    payload: int | None
    compression: float | None
    metric: float | None
    holdout: float | None = None
    met: bool = True
    evals: int | None = None
    near_best: int | None = None
    times: dict[str, float] = field(default_factory=dict)


def say(msg: str) -> None:
    print(msg, flush=True)


def digits_case(work: Path, trials: int) -> Case:
    from examples.digits import CALIB_SAMPLES, load_split, train

    t0 = time.perf_counter()
    model = train()
    x_tr, x_te, _, y_te = load_split()
    model_path, data_path = work / "digits.pt2", work / "digits.npz"
    example = (torch.from_numpy(x_te[:BATCH]),)
    torch.export.save(torch.export.export(model, example), model_path)
    arrays = {"x": x_te, "labels": y_te, "calib/x": x_tr[:CALIB_SAMPLES]}
    np.savez(data_path, **arrays)  # type: ignore[arg-type]
    say(
        f"digits: trained + exported in {time.perf_counter() - t0:.1f}s; calibration "
        f"{CALIB_SAMPLES} training images, evaluation {len(x_te)} held-out images"
    )
    return Case(
        "digits", model_path, data_path, "accuracy", Targets(max_drop=0.01), SearchSpace(), trials
    )


def minilm_case(work: Path, trials: int) -> Case:
    from examples.minilm import INPUT_NAMES, load, model_dir, tokenize

    t0 = time.perf_counter()
    path = model_dir()
    model, _ = load(path)
    texts = sentences(3 * SENTENCES)
    arrays = tokenize(path, texts)
    cal, ev, held = (slice(i * SENTENCES, (i + 1) * SENTENCES) for i in range(3))
    data = {n: arrays[n][ev] for n in INPUT_NAMES} | {
        f"calib/{n}": arrays[n][cal] for n in INPUT_NAMES
    }
    model_path, data_path = work / "minilm.pt2", work / "minilm.npz"
    np.savez(data_path, **data)  # type: ignore[arg-type]
    example = tuple(torch.from_numpy(arrays[n][:BATCH]) for n in INPUT_NAMES)
    with torch.no_grad():
        torch.export.save(torch.export.export(model, example), model_path)
    holdout = [
        tuple(torch.from_numpy(arrays[n][held][i : i + BATCH]) for n in INPUT_NAMES)
        for i in range(0, SENTENCES, BATCH)
    ]
    say(
        f"minilm: loaded + exported in {time.perf_counter() - t0:.1f}s; sentences "
        f"{SENTENCES} calibration + {SENTENCES} search evaluation + {SENTENCES} held-out "
        f"(disjoint, sha {digest(texts)})"
    )
    return Case(
        "minilm",
        model_path,
        data_path,
        "cosine",
        Targets(min_metric=0.99),
        MINILM_SPACE,
        trials,
        holdout,
    )


def holdout_scorer(case: Case, ev: Evaluator) -> Callable[[torch.nn.Module], float] | None:
    """Cosine to the fp32 model on the held-out batches (None without any)."""
    if not case.holdout:
        return None
    with torch.no_grad():
        fp32 = to_graph_module(ev.ir)
        ref = torch.cat([fp32(*b) for b in case.holdout])

    def score(module: torch.nn.Module) -> float:
        with torch.no_grad():
            return cosine(torch.cat([module(*b) for b in case.holdout]), ref)

    return score


def run_search(
    case: Case, method: str, sampler: str, ilp_seeds: int, cache: Path, out: Path
) -> tuple[Row, Evaluator, dict[str, Any]]:
    """One search from a cold evaluator; the chosen plan's row, the evaluator, the result."""
    cfg = SearchConfig(
        model=str(case.model),
        data=str(case.data),
        metric=case.metric,
        targets=case.targets,
        space=case.space,
        trials=case.trials,
        seed=0,
        sampler=sampler,
        ilp_seeds=ilp_seeds,
        cache_dir=str(cache),
    )
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    ev = open_evaluator(cfg)
    if case.prime_hessians:
        ev.cache.hessian_layers |= {layer.name for layer in ev.layers}
    times["open"] = time.perf_counter() - t0

    def sens_progress(i: int, n: int) -> None:
        if case.name == "minilm" and (i % 50 == 0 or i == n):
            say(f"  [{method}] sensitivity {i}/{n} ({time.perf_counter() - t0:.0f}s)")

    t0 = time.perf_counter()
    search = create_search(cfg, ev, progress=sens_progress)
    times["setup"] = time.perf_counter() - t0

    def on_trial(r: TrialRecord) -> None:
        if case.name == "minilm" or (r.number + 1) % 20 == 0:
            m = "-" if r.metric is None else f"{r.metric:.4f}"
            say(
                f"  [{method}] trial {r.number:>3} {r.source:<14} {r.state:<8} {m:>7} "
                f"{r.bytes:>11,} B {r.seconds:6.2f}s{'  meets target' if r.feasible else ''}"
            )

    spent = time_evaluations(ev)
    t0 = time.perf_counter()
    run_trials(search, ev, on_trial=on_trial)
    times["trials"] = time.perf_counter() - t0
    times["eval_sum"] = sum(r.seconds for r in trial_records(search))
    times["evaluate"] = spent[0]
    t0 = time.perf_counter()
    res = finalize(search, ev, out / method)
    times["finalize"] = time.perf_counter() - t0
    chosen = res["chosen"]
    if chosen is None:  # every trial was pruned: finalize chooses nothing
        say(f"  [{method}] no plan chosen: {res.get('message')}")
        row = Row(method, None, None, None, met=False, times=times)
        return row, ev, res
    score = holdout_scorer(case, ev)
    held = score(load_artifact(out / method / "model.mpq").module()) if score else None
    row = Row(
        method,
        chosen["payload_bytes"],
        chosen["compression"],
        chosen["metric"],
        held,
        res["met_targets"],
        res["evaluations_until_target"],
        times=times,
    )
    return row, ev, res


def uniform_rows(case: Case, ev: Evaluator, floor: float) -> list[Row]:
    """int8, int4 and the smallest uniform choice that reaches ``floor`` on the search data."""
    space = case.space
    rounding = "gptq" if "gptq" in space.roundings else space.roundings[0]
    act = space.activations[0]
    score = holdout_scorer(case, ev)
    scored: dict[str, Row] = {}
    for key in space.all_choices():
        plan = space.plan({layer.name: key for layer in ev.layers})
        value = ev.evaluate(plan).value
        nbytes = ev.payload_bytes(plan)
        scored[key] = Row(
            f"uniform {key}", nbytes, ev.float_bytes / nbytes, value, met=value >= floor
        )
    meeting = sorted((k for k, r in scored.items() if r.met), key=lambda k: scored[k].payload or 0)
    keys = [k for k in (f"int8/{rounding}/{act}", f"int4/{rounding}/{act}") if k in scored]
    if meeting:
        if meeting[0] not in keys:
            keys.append(meeting[0])
        scored[meeting[0]].method = f"smallest {meeting[0]}"
    rows = [scored[k] for k in keys]
    if score is not None:
        for key in keys:
            plan = space.plan({layer.name: key for layer in ev.layers})
            scored[key].holdout = score(ev.quantize(plan).module())
    return rows


def time_evaluations(ev: Evaluator) -> list[float]:
    """Wrap ``ev.evaluate`` so its seconds add up in the returned one-element list."""
    spent = [0.0]
    evaluate = ev.evaluate

    def timed(plan: QuantPlan, *, floor: float | None = None) -> Evaluation:
        t0 = time.perf_counter()
        try:
            return evaluate(plan, floor=floor)
        finally:
            spent[0] += time.perf_counter() - t0

    ev.evaluate = timed  # type: ignore[method-assign]
    return spent


def overhead(case: Case, cache: Path, work: Path) -> dict[str, float]:
    """``run_trials`` wall time vs summed trial seconds and ``evaluate`` time, on SQLite."""
    db = work / "optuna.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cfg = SearchConfig(
        model=str(case.model),
        data=str(case.data),
        metric=case.metric,
        targets=case.targets,
        space=case.space,
        trials=case.trials,
        seed=0,
        cache_dir=str(cache),
    )
    ev = open_evaluator(cfg)
    if case.prime_hessians:
        ev.cache.hessian_layers |= {layer.name for layer in ev.layers}
    search = create_search(cfg, ev, storage_url=f"sqlite:///{db}", name=f"bench-{case.name}")
    spent = time_evaluations(ev)
    t0 = time.perf_counter()
    run_trials(search, ev)
    wall = time.perf_counter() - t0
    records = trial_records(search)
    seconds = sum(r.seconds for r in records)
    return {"wall": wall, "eval_sum": seconds, "evaluate": spent[0], "n": len(records)}


def say_overhead(label: str, t: dict[str, float], n: int) -> None:
    """Overhead against TrialRecord.seconds and against Evaluator.evaluate time alone."""
    by_record = (t["trials"] - t["eval_sum"]) / t["eval_sum"]
    by_eval = (t["trials"] - t["evaluate"]) / t["evaluate"]
    say(
        f"optuna overhead, {label}: {by_record:.1%} of summed trial seconds, "
        f"{by_eval:.1%} of evaluate() time ({t['trials']:.1f}s wall, {t['eval_sum']:.1f}s "
        f"trial seconds, {t['evaluate']:.1f}s in evaluate, "
        f"{(t['trials'] - t['evaluate']) / n * 1e3:.0f} ms/trial outside evaluate, {n} trials)"
    )


def evaluations_until(res: dict[str, Any], limit: int) -> int | None:
    """Evaluations until a trial met the target at no more than ``limit`` payload bytes."""
    count = 0
    for t in sorted(res["trials"], key=lambda t: t["number"]):
        if t["pruned_by"] != "size":
            count += 1
        if t["feasible"] and t["bytes"] <= limit:
            return count
    return None


def fmt_opt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def run(case: Case, work: Path, *, measure_overhead: bool, keep_cache: bool) -> None:
    cache = work / "cache" / case.name
    if not keep_cache:  # sensitivity is measured, not read from a past run
        shutil.rmtree(cache, ignore_errors=True)
    out = work / "out" / case.name
    searches: list[Row] = []
    results: list[dict[str, Any]] = []
    first_ev: Evaluator | None = None
    baseline, floor = 0.0, 0.0
    for method, sampler, seeds in METHODS:
        say(f"{case.name}: {method} ({case.trials} trials, sampler {sampler}, ilp_seeds {seeds})")
        row, ev, res = run_search(case, method, sampler, seeds, cache, out)
        searches.append(row)
        results.append(res)
        if first_ev is None:
            first_ev = ev
            baseline = res["baseline"]["metric"]
            floor = res["targets"]["metric_floor"]
            say(
                f"{case.name}: {len(ev.layers)} layers, fp32 {ev.float_bytes:,} B, baseline "
                f"{baseline:.4f}, floor {floor:.4f}; chosen plan: {summarize(res)}"
            )
    assert first_ev is not None
    uniforms = uniform_rows(case, first_ev, floor)
    best = min((r.payload for r in searches if r.met and r.payload is not None), default=0)
    for row, res in zip(searches, results, strict=True):
        row.near_best = evaluations_until(res, int(best * NEAR_BEST))

    say("")
    head = (
        f"{'method':<26} {'payload B':>11} {'compr':>7} {case.metric:>8} {'held-out':>8} "
        f"{'met':>3} {'evals':>5} {'near':>4} {'setup s':>7} {'trials s':>8} {'final s':>7} "
        f"{'total s':>7}"
    )
    say(head)
    say("-" * len(head))
    say(
        f"{'fp32':<26} {first_ev.float_bytes:>11,} {1:>6.2f}x {baseline:>8.4f} "
        f"{'1.0000' if case.holdout else '-':>8}"
    )
    for r in searches + uniforms:
        t = r.times
        total = sum(t.get(k, 0.0) for k in ("open", "setup", "trials", "finalize"))
        say(
            f"{r.method:<26} {fmt_opt(r.payload, ','):>11} {fmt_opt(r.compression, '.2f'):>6}x "
            f"{fmt_opt(r.metric, '.4f'):>8} "
            f"{fmt_opt(r.holdout, '.4f'):>8} {'yes' if r.met else 'no':>3} "
            f"{fmt_opt(r.evals, 'd'):>5} {fmt_opt(r.near_best, 'd'):>4} "
            f"{fmt_opt(t.get('setup'), '.1f'):>7} {fmt_opt(t.get('trials'), '.1f'):>8} "
            f"{fmt_opt(t.get('finalize'), '.1f'):>7} "
            f"{fmt_opt(total if t else None, '.1f'):>7}"
        )
    say("")
    mpq, tpe, rnd = searches
    for other in (tpe, rnd):
        if mpq.evals is None:
            ratio = "mpq never met the target"
        elif other.evals is None:
            ratio = (
                f"< {mpq.evals / case.trials:.3f} ({other.method} never met it in {case.trials})"
            )
        else:
            ratio = f"{mpq.evals / other.evals:.3f} ({mpq.evals} / {other.evals})"
        say(f"evaluations to target, mpq / {other.method}: {ratio}")
    for other in (tpe, rnd):
        if mpq.near_best is None or other.near_best is None:
            ratio = f"{mpq.near_best} / {other.near_best} (- never)"
        else:
            ratio = f"{mpq.near_best / other.near_best:.3f} ({mpq.near_best} / {other.near_best})"
        say(
            f"evaluations to near-best (<= {best * NEAR_BEST:,.0f} B), "
            f"mpq / {other.method}: {ratio}"
        )
    smallest = min((u for u in uniforms if u.met), key=lambda u: u.payload or 0, default=None)
    if smallest is not None and smallest.payload and mpq.payload:
        say(f"payload, mpq / {smallest.method}: {mpq.payload / smallest.payload:.3f}")
    say_overhead("in memory, mpq run with progress callback", mpq.times, case.trials)
    if measure_overhead:
        o = overhead(case, cache, work)
        say_overhead("SQLite (WAL), no callback", {**o, "trials": o["wall"]}, int(o["n"]))
    say_goals(case, mpq, tpe)
    say("")


def say_goals(case: Case, mpq: Row, tpe: Row) -> None:
    """The issue's goals for this model, each marked met or missed."""
    total = sum(mpq.times[k] for k in ("open", "setup", "trials", "finalize"))
    goals: list[tuple[str, bool]] = []
    if mpq.payload is None or mpq.compression is None:
        goals.append(("mpq chose a plan", False))
    elif case.name == "digits":
        goals.append(
            (
                f"payload {mpq.payload:,} B <= 7,500 B at <= 1 pt drop in {total:.1f}s <= 60 s",
                mpq.met and mpq.payload <= 7500 and total <= 60,
            )
        )
    else:
        held = mpq.holdout if mpq.holdout is not None else 0.0
        goals.append(
            (
                f"{mpq.compression:.2f}x >= 8x ({mpq.payload:,} B) at held-out cosine "
                f"{held:.4f} >= 0.99",
                mpq.compression >= 8 and held >= 0.99,
            )
        )
    if mpq.evals is not None:
        tpe_evals = tpe.evals if tpe.evals is not None else case.trials + 1
        seen = f"{tpe.evals}" if tpe.evals is not None else f"> {case.trials} (never met)"
        goals.append(
            (
                f"evaluations to target {mpq.evals} <= tpe's {seen} / 5",
                mpq.evals * 5 <= tpe_evals,
            )
        )
    for text, ok in goals:
        say(f"goal {'met   ' if ok else 'MISSED'}: {text}")


def summarize(res: dict[str, Any]) -> str:
    """``weight/rounding`` -> count over the chosen plan's layers."""
    chosen = res.get("chosen")
    if not chosen:
        return "none"
    counts: dict[str, int] = {}
    for layer in chosen["plan"]["layers"].values():
        key = f"{layer['weight']}/{layer.get('rounding', '-')}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=("digits", "minilm"))
    parser.add_argument("--trials", type=int, help="trial budget (default 60 digits, 40 MiniLM)")
    parser.add_argument("--quick", action="store_true", help="20 digits / 10 MiniLM trials")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mpq-bench-search"))
    parser.add_argument(
        "--keep-cache",
        action="store_true",
        help="reuse the sensitivity table an earlier run left in --work (setup then omits it)",
    )
    parser.add_argument(
        "--prime-hessians",
        action="store_true",
        help="calibrate every layer's Hessian once up front instead of once per new GPTQ "
        "layer (same plans and metrics, less time)",
    )
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    args.work.mkdir(parents=True, exist_ok=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(
        f"bench/search.py: torch {torch.__version__}, {torch.get_num_threads()} thread, "
        f"{os.cpu_count()} CPUs, load avg {load}, {platform.machine()}; seed 0; work {args.work}"
    )
    start = time.perf_counter()
    defaults = {"digits": (60, 20), "minilm": (40, 10)}
    makers: dict[str, Callable[[Path, int], Case]] = {
        "digits": digits_case,
        "minilm": minilm_case,
    }
    for name, make in makers.items():
        if args.only in (None, name):
            full, quick = defaults[name]
            trials = args.trials or (quick if args.quick else full)
            case = make(args.work, trials)
            case.prime_hessians = args.prime_hessians
            run(case, args.work, measure_overhead=name == "digits", keep_cache=args.keep_cache)
    say(f"total {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
