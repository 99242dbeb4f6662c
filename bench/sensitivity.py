"""Layer-local sensitivity against the full-forward sensitivity the search uses today.

Run: ``nice .venv/bin/python bench/sensitivity.py [--only digits|minilm|efficientnet]
[--work DIR] [--layers K] [--no-full] [--full-warm] [--search] [--trials N]``

Per model (the cases of ``bench/search.py``: the digits CNN with the default space,
MiniLM with its int4..cb256/GPTQ space; and EfficientNet-Lite2, the pretrained
ImageNet CNN of ``examples/efficientnet.py``, 20 calibration and 40 evaluation crops
-- one and two whole batches at the evaluator's batch of 20 --, metric ``agreement``
with the float model's top-1, space int2, int3, int4, int6, cb16 x nearest, GPTQ x
a8, float activations), two cold evaluators: one measures
:func:`search._sensitivity.measure_sensitivity` (a full forward per (layer,
choice)), the other :func:`search._sensitivity_local.measure_sensitivity_local`
(one forward + backward, layer-local estimates); the local evaluator then times
the local estimate again and (digits, or ``--full-warm``) the full forward with
every weight already quantized, which separates weight quantization from the
rest. Printed: pairs, seconds of each and their ratio, the Spearman rank
correlation over all (layer, choice) pairs, the mean (and min) per-layer Spearman
(ranking the choices of one layer), the median and interquartile range of
local / full over pairs, the five largest full-forward damages beside their
estimates, and with ``--search`` the search as shipped (ILP seeds + TPE,
``--trials``) seeded from each: the chosen payload and metric.

``--layers K`` measures both methods on the same K layers only, spread evenly over
depth (the first, the last and K - 2 evenly between, by position in the model's
layer list): every plan still names every layer, the others at fp32 with float
activations -- the plans a whole-model measurement builds for those pairs, so the
values are the same, only fewer. The full forward on all of EfficientNet-Lite2's
65 layers x 20 choices takes about 40 minutes on one thread.

Threads: ``torch.set_num_threads(1)`` (as ``bench/search.py``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.search import Case, digits_case, minilm_case
from engine.quant import QuantPlan
from engine.transforms import QuantizedModel
from search import (
    Evaluator,
    SearchConfig,
    SearchSpace,
    Targets,
    finalize,
    open_evaluator,
    run_trials,
)
from search._sensitivity import FLOAT, Sensitivity, measure_sensitivity
from search._sensitivity_local import measure_sensitivity_local
from search._study import create_study, open_storage

ROOT = Path(__file__).resolve().parent.parent
EFFICIENTNET_SPACE = SearchSpace(
    formats=("int2", "int3", "int4", "int6", "cb16"),
    roundings=("nearest", "gptq"),
    activations=("a8", "float"),
)


def say(msg: str) -> None:
    print(msg, flush=True)


def efficientnet_case(work: Path, trials: int) -> Case:
    out = work / "efficientnet"
    npz = out / "efficientnet_lite2.npz"
    if not npz.exists():
        script = ROOT / "examples" / "efficientnet.py"
        cmd = [sys.executable, str(script), "--out", str(out), "--calib", "20", "--eval", "40"]
        subprocess.run(cmd, check=True)
    return Case(
        "efficientnet",
        out / "efficientnet_lite2.pt2",
        npz,
        "agreement",
        Targets(max_drop=0.01),
        EFFICIENTNET_SPACE,
        trials,
    )


def case_config(case: Case, *, trials: int = 1) -> SearchConfig:
    """The search configuration of ``case`` (seed 0)."""
    return SearchConfig(
        model=str(case.model),
        data=str(case.data),
        metric=case.metric,
        targets=case.targets,
        space=case.space,
        trials=trials,
        seed=0,
    )


def open_case(case: Case, layers: int | None = None) -> Evaluator:
    """An evaluator of ``case``; with ``layers``, measuring only that many (module doc)."""
    ev = open_evaluator(case_config(case))
    if layers is not None and layers < len(ev.layers):
        every, quantize = ev.layers, ev.quantize
        n = len(every)
        picks = sorted({round(i * (n - 1) / max(1, layers - 1)) for i in range(layers)})
        ev.layers = tuple(every[i] for i in picks)

        def whole(plan: QuantPlan) -> QuantizedModel:
            return quantize(replace(plan, layers={x.name: FLOAT for x in every} | plan.layers))

        ev.quantize = whole  # type: ignore[method-assign]
        say(f"{case.name}: {len(picks)} of {n} layers: {', '.join(x.name for x in ev.layers)}")
    return ev


def timed(ev: Evaluator, space: SearchSpace, local: bool) -> tuple[Sensitivity, float]:
    t0 = time.perf_counter()
    sens = measure_sensitivity_local(ev, space) if local else measure_sensitivity(ev, space)
    return sens, time.perf_counter() - t0


def search_with(case: Case, sens: Sensitivity, out: Path) -> str:
    """The search as shipped, seeded from ``sens``: the chosen payload and metric."""
    cfg = case_config(case, trials=case.trials)
    ev = open_evaluator(cfg)
    ev.prime(case.space)  # one calibration pass for every GPTQ layer, as create_search does
    t0 = time.perf_counter()
    search = create_study(cfg, ev, sens, storage=open_storage(None), name="bench")
    run_trials(search, ev)
    res = finalize(search, ev, out)
    chosen = res["chosen"]
    if chosen is None:
        return f"no plan chosen ({res.get('message')})"
    return (
        f"{chosen['payload_bytes']:,} B, metric {chosen['metric']:.4f}, "
        f"met {res['met_targets']}, {time.perf_counter() - t0:.0f}s"
    )


def compare(
    name: str, full: Sensitivity, local: Sensitivity, t_full: float, t_local: float
) -> None:
    keys = [(layer, c) for layer in full for c in full[layer]]
    a = [full[layer][c] for layer, c in keys]
    b = [local[layer][c] for layer, c in keys]
    rho = float(spearmanr(a, b).statistic)
    per_layer = [
        float(spearmanr(list(full[x].values()), [local[x][c] for c in full[x]]).statistic)
        for x in full
        if len(full[x]) > 2
    ]
    per_layer = [r for r in per_layer if r == r]  # nan where a layer's values are all tied
    ratios = [y / x for x, y in zip(a, b, strict=True) if x > 0]
    say(
        f"{name}: {len(keys)} pairs | full {t_full:.1f}s, local {t_local:.1f}s, "
        f"ratio {t_full / t_local:.1f}x | spearman all pairs {rho:.3f}, "
        f"mean per layer {statistics.fmean(per_layer):.3f} (min {min(per_layer):.3f}), "
        f"local / full median {statistics.median(ratios):.2f} "
        f"(IQR {quartiles(ratios)})"
    )
    worst = sorted(keys, key=lambda k: -full[k[0]][k[1]])[:5]
    for x, c in worst:
        say(f"  {x} {c}: full {full[x][c]:.3g} local {local[x][c]:.3g}")


def quartiles(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=4)
    return f"{q[0]:.2f}..{q[2]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("digits", "minilm", "efficientnet"))
    parser.add_argument("--work", type=Path)
    parser.add_argument("--search", action="store_true", help="also search with each")
    parser.add_argument("--trials", type=int, default=60, help="search trials (default 60)")
    parser.add_argument("--layers", type=int, help="only K layers spread over depth")
    parser.add_argument("--no-full", action="store_true", help="no cold full-forward run")
    parser.add_argument(
        "--full-warm", action="store_true", help="time the full forward with cached weights"
    )
    args = parser.parse_args()
    if args.layers is not None and (args.layers < 1 or args.search):
        parser.error("--layers takes K >= 1 and cannot be combined with --search")
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="mpq-bench-sens-"))
    work.mkdir(parents=True, exist_ok=True)
    builders = {"digits": digits_case, "minilm": minilm_case, "efficientnet": efficientnet_case}
    for name, build in builders.items():
        if args.only and args.only != name:
            continue
        case = build(work, args.trials)
        ev = open_case(case, args.layers)
        local, t_local = timed(ev, case.space, local=True)
        _, t_local_warm = timed(ev, case.space, local=True)
        say(f"{name}: local {t_local:.1f}s cold, {t_local_warm:.1f}s with the weights cached")
        runs = {"local": local}
        if name == "digits" or args.full_warm:
            _, t_full_warm = timed(ev, case.space, local=False)
            say(f"{name}: full {t_full_warm:.1f}s with the weights cached")
        if not args.no_full:
            full, t_full = timed(open_case(case, args.layers), case.space, local=False)
            compare(name, full, local, t_full, t_local)
            runs = {"full": full, "local": local}
        if args.search:
            for label, sens in runs.items():
                say(f"{name}: search seeded by {label}: {search_with(case, sens, work / label)}")


if __name__ == "__main__":
    main()
