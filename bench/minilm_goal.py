"""MiniLM through the search as a user runs it: compression at held-out cosine >= 0.99.

Run: ``nice .venv/bin/python bench/minilm_goal.py [--trials 40] [--activations float,a8]
[--formats F1,F2,...] [--work DIR]``

The real all-MiniLM-L6-v2 sentence encoder (``examples/minilm.py``, from its PyPI wheel),
768 disjoint sentences (``bench/_sentences.py``): 256 calibration (``calib/``) and 512
evaluation, of which the job holds out half (``holdout=0.5``: 256 search, 256 held-out,
seeded). Target: mean cosine to fp32 >= 0.99 (``min_metric``), the default weight formats
and roundings, the default sensitivity method (``auto``: ``local`` on a model this size).
One search per activation setting given (``float``: weight-only, the usual deployment
of transformers; ``a8``: 8-bit activations, what integer-only hardware needs), each with
a cold evaluator and no sensitivity cache, 1 thread.

Per search: seconds to open the model and data, to prepare the study (sensitivity +
seeding, the figure the goal bounds: 10% of the 484 s the full-forward sensitivity took
on this model), of the trials and of finalize; the chosen ``model.mpq``'s payload and its
compression against fp32, the cosine on the search split and on the held-out split with
its 95% interval, ``met_targets`` (judged held out), and the integer-only readiness of the
chosen plan.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._sentences import digest, sentences
from search import JobSpec, Targets, create_search, finalize, open_evaluator, run_trials

BATCH = 32
CALIB, EVAL = 256, 512
GOAL_RATIO = 8.0
GOAL_PREPARE_S = 48.4  # 10% of the 484 s sensitivity + seeding took before (bench/README.md)


def say(msg: str) -> None:
    print(msg, flush=True)


def build(work: Path) -> tuple[Path, Path]:
    """Export MiniLM and write its data file (module doc)."""
    from examples.minilm import INPUT_NAMES, load, model_dir, tokenize

    path = model_dir()
    model, _ = load(path)
    texts = sentences(CALIB + EVAL)
    arrays = tokenize(path, texts)
    data = {n: arrays[n][CALIB:] for n in INPUT_NAMES} | {
        f"calib/{n}": arrays[n][:CALIB] for n in INPUT_NAMES
    }
    model_path, data_path = work / "minilm.pt2", work / "minilm.npz"
    np.savez(data_path, **data)  # type: ignore[arg-type]
    example = tuple(torch.from_numpy(arrays[n][:BATCH]) for n in INPUT_NAMES)
    with torch.no_grad():
        torch.export.save(torch.export.export(model, example), model_path)
    say(f"minilm: {CALIB} calibration + {EVAL} evaluation sentences (sha {digest(texts)})")
    return model_path, data_path


def run(
    model: Path, data: Path, activation: str, trials: int, out: Path, formats: str | None
) -> None:
    spec = JobSpec(
        metric="cosine",
        targets=Targets(min_metric=0.99),
        space=None if formats is None else tuple(formats.split(",")),
        activation=(activation,),
        trials=trials,
        holdout=0.5,
    )
    config = spec.search_config(model=str(model), data=str(data))
    t0 = time.perf_counter()
    ev = open_evaluator(config, trust_uploads=True)
    t_open = time.perf_counter() - t0
    t = time.perf_counter()
    search = create_search(config, ev)
    t_prep = time.perf_counter() - t
    t = time.perf_counter()
    run_trials(search, ev)
    t_trials = time.perf_counter() - t
    t = time.perf_counter()
    result = finalize(search, ev, out)
    t_fin = time.perf_counter() - t
    c = result["chosen"]
    method = result["sensitivity_method"]
    say(
        f"activation {activation}: open {t_open:.1f}s, prepare (sensitivity [{method}] + "
        f"seeding) {t_prep:.1f}s ({t_prep / 484 * 100:.1f}% of 484 s; goal <= "
        f"{GOAL_PREPARE_S} s: {'met' if t_prep <= GOAL_PREPARE_S else 'MISSED'}), trials "
        f"{t_trials:.1f}s, finalize {t_fin:.1f}s"
    )
    if c is None:
        say("  no plan chosen")
        return
    held = c["heldout"] or {}
    lo, hi = held.get("ci") or (float("nan"), float("nan"))
    ratio = c["compression"]
    say(
        f"  chosen: {c['payload_bytes']:,} B ({ratio:.2f}x; goal >= {GOAL_RATIO}x: "
        f"{'met' if ratio >= GOAL_RATIO and result['met_targets'] else 'MISSED'}), cosine "
        f"search {c['metric']:.4f}, held-out {held.get('metric', float('nan')):.4f} "
        f"[{lo:.4f}, {hi:.4f}] ({held.get('samples')} sentences); met_targets "
        f"{result['met_targets']}; integer-only {c['integer_only']} "
        f"({c['integer_ready_layers']} layers integer-ready, {len(c['float_layers'])} float), "
        f"integer-only cosine held out {held.get('integer_metric', float('nan')):.4f}"
    )
    uni = ", ".join(f"{u['plan']} {u['bytes']:,} B {u['metric']:.4f}" for u in result["uniform"])
    say(f"  uniform baselines (trials of the same study): {uni}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--activations", default="float,a8")
    parser.add_argument("--formats", help="weight formats (default: the search's)")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        model, data = build(work)
        for act in args.activations.split(","):
            run(model, data, act, args.trials, work / f"out-{act}", args.formats)


if __name__ == "__main__":
    main()
