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
* ``warm head tuned``: warm-started from ``cold`` on the 30-epoch model whose classifier
  alone was fine-tuned one epoch (batch norms frozen): the case where the layer-keyed
  sensitivity cache saves work (three of four layers unchanged).

Columns: ``reach`` -- trials-to-reach: the first trial (1-based, in trial order, pruned
trials counted: they take a slot of the budget) at which the smallest feasible payload
found so far is <= the cold run's chosen payload (``-``: never within the budget); the
ratio to the cold run's own figure; ``sensitivity s``: seconds to obtain the sensitivity
table, and layers measured / reused (the study's ``reuse`` attribute); the smallest
feasible payload the run found; ``bar``: the cold run's chosen payload. Each run opens
its own evaluator (cold weight cache), so the times compare. Threads: 1.
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


def write_models(work: Path) -> tuple[list[Path], Path]:
    """digits after 30 epochs, after 31 (same seed), with its head fine-tuned; the data."""
    from examples.digits import CALIB_SAMPLES, load_split, train

    x_tr, x_te, _, y_te = load_split()
    example = (torch.from_numpy(x_te[:BATCH]),)
    versions = {
        "digits-30.pt2": lambda: train(epochs=30),
        "digits-31.pt2": lambda: train(epochs=31),
        "digits-head.pt2": lambda: tune_head(train(epochs=30), x_tr, load_split()[2]),
    }
    paths = []
    for name, make in versions.items():
        path = work / name
        if not path.exists():
            torch.export.save(torch.export.export(make(), example), path)
        paths.append(path)
    data = work / "digits.npz"
    np.savez(data, x=x_te, labels=y_te, **{"calib/x": x_tr[:CALIB_SAMPLES]})
    return paths, data


def tune_head(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> torch.nn.Module:
    """One epoch of Adam (lr 1e-3, seed 1) on the classifier alone, batch norms frozen."""
    torch.manual_seed(1)
    model.eval()  # batch-norm statistics stay: the folded convolutions are unchanged
    head = model.classifier  # type: ignore[union-attr]
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(1))
    for start in range(0, len(xt), 64):
        idx = order[start : start + 64]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return model


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
) -> tuple[Any, list[TrialRecord]]:
    """One study to its budget: the search and evaluator, its trial records."""
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
    search = create_search(config, ev, storage_url=url, name=name, warm=warm)
    run_trials(search, ev)
    return (search, ev), trial_records(search)


def one_seed(work: Path, models: list[Path], data: Path, seed: int, trials: int) -> list[str]:
    """The five runs of one search seed; the table's rows."""
    v1, v2, v3 = models
    root = work / f"seed{seed}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    url = f"sqlite:///{root / 'studies.db'}"
    (search, ev), cold = run(v1, data, root / "cache", url, "cold", seed=seed, trials=trials)
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
    rows = [_row(seed, "cold", cold, bar, base, search.study.user_attrs["reuse"])]
    for label, model, cache, warm_from in (
        ("warm same", v1, root / "cache", warm),
        ("warm +1 epoch", v2, root / "cache", warm),
        ("cold +1 epoch", v2, root / "cache2", None),
        ("warm head tuned", v3, root / "cache", warm),
    ):
        name = label.replace(" ", "-").replace("+", "p")
        (s, _), recs = run(model, data, cache, url, name, seed=seed, trials=trials, warm=warm_from)
        rows.append(_row(seed, label, recs, bar, base, s.study.user_attrs["reuse"]))
    return rows


def _row(
    seed: int,
    label: str,
    records: list[TrialRecord],
    bar: int,
    base: int | None,
    reuse: dict[str, Any],
) -> str:
    hit = reach(records, bar)
    ratio = "-" if hit is None or base is None else f"{hit / base:.2f}"
    smallest = min((r.bytes for r in records if r.feasible), default=None)
    return (
        f"| {seed} | {label} | {hit if hit is not None else '-'} | {ratio} | "
        f"{reuse['sensitivity_s']:.2f} | {reuse['layers_measured']} / {reuse['layers_reused']} "
        f"| {smallest} | {bar} |"
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
    models, data = write_models(args.work)
    say(f"models written in {time.perf_counter() - t0:.1f}s")
    say("| seed | run | reach | / cold | sensitivity s | measured / reused | smallest | bar |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for seed in (int(s) for s in args.seeds.split(",")):
        for row in one_seed(args.work, models, data, seed, args.trials):
            say(row)
    say(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
