"""Finalize a search: choose the result, pack it, write its report and plots.

``finalize`` reads every trial, takes the Pareto front (metric better -- up, or down
for kl and nmse -- and bytes down), keeps the plans that meet the targets,
re-evaluates those finalists integer-only on the search split, and chooses: the
smallest finalist when a metric target is given, else the best-scoring within the size
ceiling. When nothing meets the targets the closest miss is chosen and the result says
so. The chosen plan is packed into ``model.mpq``; the metric and bytes reported are
measured on that file (loaded back).

Every choice is made on the search split, so its metric is optimistic for new
data. The chosen file is then scored once on the held-out split
(``chosen.heldout``: metric, 95% interval, sample count, integer-only metric), and
``met_targets`` says whether the targets hold there: the search split met them
(``met_on_search``: some trial did) and the chosen file's held-out metric meets the
floor computed from the float model's held-out metric (``targets.heldout_metric_floor``)
or the ceiling (``targets.metric_ceiling``, the same on both splits), with payload bytes
``<=`` the byte ceiling. Without a held-out split the two are the same.
``chosen.evaluation_metric`` is the file on the whole evaluation split (both splits),
which ``mpq eval model.mpq`` reproduces, and so are the related metrics in
``chosen.metrics`` (e.g. agreement, top5 and kl beside accuracy; cosine, nmse and sqnr
for embeddings), also stored in the file.

Size: over 300 lines: the choice, the packing and the report of one result, which read
the same trial records and targets; the plots are :mod:`search._plots`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import MPQError
from engine.io import load_artifact, save_artifact
from engine.io.export import export_artifact_onnx
from engine.transforms.integer import lower_to_integer
from search._evaluator import Evaluator
from search._front import front, goodness
from search._study import Search, TrialRecord, trial_records

__all__ = ["Finalist", "finalize"]


@dataclass(frozen=True)
class Finalist:
    """A front plan re-evaluated: simulated (from the trial) and integer-only."""

    record: TrialRecord
    integer_metric: float
    integer_only: str
    float_layers: dict[str, str]
    """Layers that do not run on integers in the integer-only model, with the reason."""


def finalize(
    search: Search,
    ev: Evaluator,
    out_dir: Path,
    *,
    source_sha256: str = "",
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Choose the result, write ``model.mpq``, ``result.json`` and the plots; return the result."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    config, targets = search.config, search.config.targets
    floor = targets.metric_floor(search.baseline)
    ceiling = targets.metric_ceiling()
    held_base = ev.heldout_baseline
    held_floor = None if held_base is None else targets.metric_floor(held_base.metric)
    records = trial_records(search)
    pareto = front(records, metric=config.metric)
    feasible = [r for r in pareto if r.feasible]
    met_on_search = bool(feasible)
    pool = feasible or _closest_misses(search, records)
    finalists = []
    for r in pool:
        qm = ev.quantize(config.space.plan(r.choices))
        im = lower_to_integer(qm)
        floats = {x.name: x.reason for x in im.report.layers if x.execution == "float"}
        finalists.append(Finalist(r, ev.score_module(im), im.report.integer_only, floats))
    chosen = (
        _choose(finalists, metric=config.metric, has_metric_target=targets.has_metric_target)
        if finalists
        else None
    )
    result: dict[str, Any] = {
        "config": config.to_json(),
        "baseline": {
            "metric": search.baseline,
            "bytes": search.float_bytes,
            "heldout": None if held_base is None else held_base.to_json(),
        },
        "targets": {
            "metric_floor": floor,
            "heldout_metric_floor": held_floor,
            "metric_ceiling": ceiling,
            "byte_ceiling": targets.byte_ceiling(search.float_bytes),
        },
        "met_targets": met_on_search,
        "met_on_search": met_on_search,
        "holdout": {
            "fraction": config.holdout,
            "search_samples": sum(b.n_valid for b in ev.batches),
            "heldout_samples": sum(b.n_valid for b in ev.heldout_batches),
            "stratified_by": ev.stratified_by,
            "seed": config.seed,
            "note": ev.heldout_note,
        },
        "trials": [r.to_json() for r in records],
        "front": [r.number for r in pareto],
        "finalists": [
            {
                "number": f.record.number,
                "metric": f.record.metric,
                "bytes": f.record.bytes,
                "integer_metric": f.integer_metric,
                "integer_only": f.integer_only,
                "integer_meets_floor": _meets(f.integer_metric, floor, ceiling),
            }
            for f in finalists
        ],
        "uniform": _uniform_baselines(search, ev, records),
        "chosen": None,
        "sensitivity": search.study.user_attrs.get("sensitivity", {}),
        "sensitivity_method": search.study.user_attrs.get("sensitivity_method"),
        "evaluations_until_target": _evaluations_until_target(records),
    }
    if chosen is not None:
        result["chosen"] = _pack(search, ev, chosen, out_dir / "model.mpq", source_sha256)
        result["chosen"]["onnx"] = _export_onnx(out_dir / "model.mpq", out_dir / "model.onnx")
        if held_base is not None and met_on_search:
            result["met_targets"] = _holds(result["chosen"], held_floor, result["targets"])
        message = _message(result, chosen)
        if message:
            result["message"] = message
    else:
        result["message"] = "no trial was evaluated; raise the trial budget or the time budget"
    if chosen is not None and not _meets(chosen.integer_metric, floor, ceiling):
        bound = f"below the metric floor {floor:.6g}" if floor is not None else ""
        bound = bound or f"above the metric ceiling {ceiling:.6g}"
        result["integer_note"] = (
            f"integer-only execution of the chosen plan scores {chosen.integer_metric:.6g} on "
            f"the search split, {bound}: the target holds for the simulated model "
            "(what model.mpq gives in MPQ), not on integer-only hardware"
        )
    result["timings"] = {**(timings or {}), "finalize_s": time.perf_counter() - t0}
    _write_json(out_dir / "result.json", result)
    from search._plots import plot_layers, plot_pareto

    plot_pareto(result, out_dir / "pareto.png", ev)
    if chosen is not None:
        plot_layers(result, out_dir / "layers.png")
    return result


def _uniform_baselines(
    search: Search, ev: Evaluator, records: list[TrialRecord]
) -> list[dict[str, Any]]:
    """Uniform plans: int8 and int4 everywhere (GPTQ where the space allows it).

    Those in the space are trials of the study (:func:`search._study.uniform_plans`) and
    are reported from their trial (``trial``: its number). int8 and int4 with the space's
    first activation format are always reported, for the plot: where they are not trials
    (a space without them, or a budget spent before them) they are evaluated here, as
    reference points outside the search (``trial``: None).
    """
    space = search.config.space
    rounding = "gptq" if "gptq" in space.roundings else space.roundings[0]
    out = []
    for r in sorted(records, key=lambda r: r.number):
        if r.source.startswith("uniform:") and r.metric is not None:
            key = r.source.removeprefix("uniform:")
            out.append(
                {"plan": key, "metric": r.metric, "bytes": r.bytes, "trial": r.number}
                | ({"state": r.state} if r.state != "complete" else {})
            )
    seen = {u["plan"] for u in out}
    for weight in ("int8", "int4"):
        key = f"{weight}/{rounding}/{space.activations[0]}"
        if key in seen:
            continue
        plan = space.plan({layer.name: key for layer in ev.layers})
        value = ev.evaluate(plan).value
        out.append({"plan": key, "metric": value, "bytes": ev.payload_bytes(plan), "trial": None})
    return out


def _closest_misses(search: Search, records: list[TrialRecord]) -> list[TrialRecord]:
    """The trial nearest to feasibility (smallest summed violation) on the Pareto front.

    Completed trials on the front first, so the closest miss is never dominated by
    another trial (a uniform baseline among them); when every trial was pruned, trials
    pruned on a prefix of the data (their metric is that prefix's) -- the chosen plan is
    then scored on the whole split when it is packed.
    """
    done = front(records, metric=search.config.metric)
    done = done or [r for r in records if r.metric is not None]
    if not done:
        return []
    targets = search.config.targets

    def violation(r: TrialRecord) -> float:
        assert r.metric is not None
        cons = targets.constraints(
            r.metric, r.bytes, baseline=search.baseline, float_bytes=search.float_bytes
        )
        return sum(max(0.0, v) for v in cons.values())

    return [min(done, key=violation)]


def _meets(value: float, floor: float | None, ceiling: float | None) -> bool:
    """``value`` meets the metric target: at least the floor, at most the ceiling."""
    return (floor is None or value >= floor) and (ceiling is None or value <= ceiling)


def _choose(finalists: list[Finalist], *, metric: str, has_metric_target: bool) -> Finalist:
    def good(f: Finalist) -> float:
        return goodness(metric, f.record.metric or 0.0)

    if has_metric_target:
        return min(finalists, key=lambda f: (f.record.bytes, -good(f)))
    return max(finalists, key=lambda f: (good(f), -f.record.bytes))


def _pack(
    search: Search, ev: Evaluator, chosen: Finalist, path: Path, source_sha256: str
) -> dict[str, Any]:
    """Write the chosen plan's artifact; report what the file itself gives."""
    plan = search.config.space.plan(chosen.record.choices)
    qm = ev.quantize(plan)
    partial = path.with_name(path.name + ".partial")
    try:
        save_artifact(qm, partial, source_sha256=source_sha256)
        loaded = load_artifact(partial)
        # The file's own metrics are what `mpq eval` gives: the whole evaluation split.
        scores = ev.file_scores(loaded.module())
        value, metrics, held = scores.metric, scores.metrics, scores.heldout
        whole = metrics[search.config.metric]
        file_bytes = save_artifact(qm, partial, source_sha256=source_sha256, metrics=metrics)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    heldout = None
    if held is not None:
        integer = ev.score_module(lower_to_integer(qm), split="heldout")
        heldout = held.to_json() | {"integer_metric": integer}
    return {
        "trial": chosen.record.number,
        "plan": plan.to_json(),
        "metric": value,
        "heldout": heldout,
        "evaluation_metric": whole,
        "metrics": metrics,
        "integer_metric": chosen.integer_metric,
        "integer_only": chosen.integer_only,
        "integer_ready_layers": len(ev.layers) - len(chosen.float_layers),
        "float_layers": chosen.float_layers,
        "payload_bytes": loaded.payload_bytes,
        "file_bytes": file_bytes,
        "compression": search.float_bytes / loaded.payload_bytes,
    }


def _holds(chosen: dict[str, Any], floor: float | None, targets: dict[str, Any]) -> bool:
    """Whether the packed plan meets the targets on the held-out split (module docstring).

    Only asked of a plan that met them on the search split: a closest miss that clears
    the floor on the (smaller, noisier) held-out split is not a success.
    """
    ceiling = targets["byte_ceiling"]
    metric_ok = _meets(chosen["heldout"]["metric"], floor, targets["metric_ceiling"])
    return metric_ok and (ceiling is None or chosen["payload_bytes"] <= ceiling)


def _message(result: dict[str, Any], chosen: Finalist) -> str | None:
    """What the user should know about the targets, on the search and held-out splits."""
    held = result["chosen"]["heldout"]
    floor = result["targets"]["heldout_metric_floor"]
    parts = []
    if not result["met_on_search"]:
        parts.append(
            "no plan met the targets on the search split; the chosen plan is the closest miss "
            f"(metric {chosen.record.metric:.6g}, {chosen.record.bytes} bytes)"
        )
    holds = None if held is None else _holds(result["chosen"], floor, result["targets"])
    if held is not None and holds != result["met_on_search"]:
        lo, hi = held["ci"] if held["ci"] is not None else (math.nan, math.nan)
        verdict = "meets" if holds else "misses"
        mc = result["targets"]["metric_ceiling"]
        against = f" against the floor {floor:.6g}" if floor is not None else ""
        against = against or ("" if mc is None else f" against the ceiling {mc:.6g}")
        parts.append(
            f"on the held-out split the chosen plan {verdict} the targets: metric "
            f"{held['metric']:.6g} (95% CI [{lo:.4g}, {hi:.4g}], {held['samples']} "
            f"samples){against}; expect the held-out figure on new data"
        )
    return "; ".join(parts) or None


def _export_onnx(artifact: Path, path: Path) -> dict[str, Any]:
    """Write the artifact as QDQ ONNX beside it; say what was written, or why nothing was."""
    partial = path.with_name(path.name + ".partial")
    try:
        exported = export_artifact_onnx(artifact)
        exported.save(partial)
        os.replace(partial, path)
    except MPQError as exc:
        return {"file": None, "error": {"code": exc.code, "message": exc.message}}
    finally:
        partial.unlink(missing_ok=True)
    report = exported.report
    return {
        "file": path.name,
        "file_bytes": report.file_bytes,
        "opset": report.opset,
        "notes": list(report.notes),
    }


def _evaluations_until_target(records: list[TrialRecord]) -> int | None:
    """Evaluations (trials scored, pruned ones included) until the first feasible one."""
    count = 0
    for r in sorted(records, key=lambda r: r.number):
        if r.pruned_by != "size":
            count += 1
        if r.feasible:
            return count
    return None


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(doc, indent=2, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"not JSON serializable: {type(v).__name__}")
