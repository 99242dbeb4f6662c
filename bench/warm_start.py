"""A nightly job warm-started from the previous night's: trials to reach the cold result.

Run: ``.venv/bin/python bench/warm_start.py [--seeds 0,1,2] [--trials N] [--work DIR]``

The digits CNN (``examples.digits.train()``, seed 0, 30 epochs, exported at batch 32;
``calib/x``: 256 training images; evaluation: the 540 held-out images), top-1 accuracy,
target ``max_drop=0.01`` (one point), default search space, ``--trials`` (40) per study,
per search seed:

* ``cold``: the search as shipped on a fresh sensitivity cache (``create_search`` +
  ``run_trials`` + ``finalize``): the baseline. Its chosen plan's payload is the bar.
* ``warm same``: warm-started from ``cold`` (``load_warm_start`` of its chosen trial and
  front, ``create_search(..., warm=...)``) on the unchanged model, same cache directory.
* ``warm +1 epoch``: warm-started from ``cold`` on the model retrained one epoch more
  (``train(epochs=31)``, same seed: the 30-epoch run continued), same cache directory.
* ``cold +1 epoch``: the retrained model searched cold (fresh cache), for reference.

Columns: ``reach`` -- trials-to-reach: the first trial (1-based, in trial order, pruned
trials counted: they take a slot of the budget) at which the smallest feasible payload
found so far is <= the cold run's chosen payload (``-``: never within the budget); the
ratio to the cold run's own figure; ``setup s``: ``create_search`` wall time (sensitivity,
seeding); layers measured / reused (from the study's ``warm_start`` attribute; a cold
run measures every layer); the smallest feasible payload the run found. Each run opens
its own evaluator (cold weight cache), so the setup times compare. Threads: 1.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search import (
    SearchConfig,
    SearchSpace,
    Targets,
    TrialRecord,
    WarmStart,
    create_search,
    finalize,
    load_warm_start,
    open_evaluator,
    run_trials,
    trial_records,
)

BATCH = 32


def say(msg: str) -> None:
    print(msg, flush=True)


def write_models(work: Path) -> tuple[Path, Path, Path]:
    """digits after 30 and after 31 epochs (same seed), and the data file."""
    from examples.digits import CALIB_SAMPLES, load_split, train

    x_tr, x_te, _, y_te = load_split()
    example = (torch.from_numpy(x_te[:BATCH]),)
    paths = []
    for epochs in (30, 31):
        path = work / f"digits-{epochs}.pt2"
        if not path.exists():
            torch.export.save(torch.export.export(train(epochs=epochs), example), path)
        paths.append(path)
    data = work / "digits.npz"
    np.savez(data, x=x_te, labels=y_te, **{"calib/x": x_tr[:CALIB_SAMPLES]})
    return paths[0], paths[1], data


def reach(records: list[TrialRecord], bar: int) -> int | None:
    """Trials-to-reach (module doc): 1-based position of the first trial reaching ``bar``."""
    best: int | None = None
    for i, r in enumerate(sorted(records, key=lambda r: r.number), start=1):
        if r.feasible and (best is None or r.bytes < best):
            best = r.bytes
        if best is not None and best <= bar:
            return i
    return None


def run(
    model: Path,
    data: Path,
    cache: Path,
    url: str,
    name: str,
    *,
    seed: int,
    trials: int,
    warm: WarmStart | None = None,
) -> tuple[Any, list[TrialRecord], float]:
    """One study to its budget: the search, its trial records, ``create_search`` seconds."""
    config = SearchConfig(
        model=str(model),
        data=str(data),
        metric="accuracy",
        targets=Targets(max_drop=0.01),
        space=SearchSpace(),
        trials=trials,
        seed=seed,
        cache_dir=str(cache),
    )
    ev = open_evaluator(config)
    t0 = time.perf_counter()
    search = create_search(config, ev, storage_url=url, name=name, warm=warm)
    setup = time.perf_counter() - t0
    run_trials(search, ev)
    return (search, ev), trial_records(search), setup


def one_seed(work: Path, v1: Path, v2: Path, data: Path, seed: int, trials: int) -> list[str]:
    """The four runs of one search seed; the table's rows."""
    root = work / f"seed{seed}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    url = f"sqlite:///{root / 'studies.db'}"
    (search, ev), cold, setup = run(v1, data, root / "cache", url, "cold", seed=seed, trials=trials)
    result = finalize(search, ev, root / "cold-out")
    chosen = result["chosen"]
    bar = next(r.bytes for r in cold if r.number == chosen["trial"])
    warm = load_warm_start(
        url,
        "cold",
        from_job=0,
        chosen_trial=chosen["trial"],
        front=list(result["front"]),
        chosen_bytes=bar,
    )
    base = reach(cold, bar)
    n_layers = len(ev.layers)
    rows = [_row(seed, "cold", cold, bar, base, setup, (n_layers, 0))]
    for label, model, cache, warm_from in (
        ("warm same", v1, root / "cache", warm),
        ("warm +1 epoch", v2, root / "cache", warm),
        ("cold +1 epoch", v2, root / "cache2", None),
    ):
        name = label.replace(" ", "-").replace("+", "p")
        (s, _), recs, t = run(
            model, data, cache, url, name, seed=seed, trials=trials, warm=warm_from
        )
        info = s.study.user_attrs.get("warm_start") or {}
        counts = (info.get("layers_measured", n_layers), info.get("layers_reused", 0))
        rows.append(_row(seed, label, recs, bar, base, t, counts))
    return rows


def _row(
    seed: int,
    label: str,
    records: list[TrialRecord],
    bar: int,
    base: int | None,
    setup: float,
    counts: tuple[int, int],
) -> str:
    hit = reach(records, bar)
    ratio = "-" if hit is None or base is None else f"{hit / base:.2f}"
    smallest = min((r.bytes for r in records if r.feasible), default=None)
    return (
        f"| {seed} | {label} | {hit if hit is not None else '-'} | {ratio} | {setup:.2f} | "
        f"{counts[0]} / {counts[1]} | {smallest} | {bar} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--work", type=Path, default=Path("bench/out/warm_start"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    v1, v2, data = write_models(args.work)
    say(f"models written in {time.perf_counter() - t0:.1f}s")
    say("| seed | run | reach | / cold | setup s | layers measured / reused | smallest | bar |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed in (int(s) for s in args.seeds.split(",")):
        for row in one_seed(args.work, v1, v2, data, seed, args.trials):
            say(row)
    say(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
