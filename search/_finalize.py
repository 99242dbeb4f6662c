"""Finalize a search: choose the result, pack it, write its report and plots.

``finalize`` reads every trial, takes the Pareto front (metric better -- up, or down
for kl and nmse -- and bytes down), keeps the plans that meet the targets,
re-evaluates those finalists integer-only on the whole evaluation split, and
chooses: the smallest finalist when a metric target is given, else the best-scoring
within the size ceiling. When nothing meets the targets the closest miss is chosen
and the result says so. The chosen plan is packed into ``model.mpq``; the metric and
bytes reported are measured on that file (loaded back), so ``mpq eval`` reproduces
them, and so are the related metrics in ``chosen.metrics`` (e.g. agreement, top5 and
kl beside accuracy; cosine, nmse and sqnr for embeddings).
"""

from __future__ import annotations

import json
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
    records = trial_records(search)
    pareto = front(records, metric=config.metric)
    feasible = [r for r in pareto if r.feasible]
    met = bool(feasible)
    pool = feasible or _closest_misses(search, records)
    finalists = []
    for r in pool:
        qm = ev.quantize(config.space.plan(r.choices))
        im = lower_to_integer(qm)
        finalists.append(Finalist(r, ev.score_module(im), im.report.integer_only))
    chosen = (
        _choose(finalists, metric=config.metric, has_metric_target=targets.has_metric_target)
        if finalists
        else None
    )
    result: dict[str, Any] = {
        "config": config.to_json(),
        "baseline": {"metric": search.baseline, "bytes": search.float_bytes},
        "targets": {
            "metric_floor": floor,
            "metric_ceiling": ceiling,
            "byte_ceiling": targets.byte_ceiling(search.float_bytes),
        },
        "met_targets": met,
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
        "uniform": _uniform_baselines(search, ev),
        "chosen": None,
        "sensitivity": search.study.user_attrs.get("sensitivity", {}),
        "evaluations_until_target": _evaluations_until_target(records),
    }
    if chosen is not None:
        result["chosen"] = _pack(search, ev, chosen, out_dir / "model.mpq", source_sha256)
        result["chosen"]["onnx"] = _export_onnx(out_dir / "model.mpq", out_dir / "model.onnx")
        if not met:
            result["message"] = (
                "no plan met the targets; the chosen plan is the closest miss "
                f"(metric {chosen.record.metric:.6g}, {chosen.record.bytes} bytes)"
            )
    else:
        result["message"] = "no trial was evaluated; raise --trials or --timeout"
    if chosen is not None and not _meets(chosen.integer_metric, floor, ceiling):
        bound = f"below the metric floor {floor:.6g}" if floor is not None else ""
        bound = bound or f"above the metric ceiling {ceiling:.6g}"
        result["integer_note"] = (
            f"integer-only execution of the chosen plan scores {chosen.integer_metric:.6g}, "
            f"{bound}: the target holds for the simulated model "
            "(what model.mpq gives in MPQ), not on integer-only hardware"
        )
    result["timings"] = {**(timings or {}), "finalize_s": time.perf_counter() - t0}
    _write_json(out_dir / "result.json", result)
    from search._plots import plot_layers, plot_pareto

    plot_pareto(result, out_dir / "pareto.png", ev)
    if chosen is not None:
        plot_layers(result, out_dir / "layers.png")
    return result


def _uniform_baselines(search: Search, ev: Evaluator) -> list[dict[str, Any]]:
    """int8 and int4 everywhere (GPTQ where the space allows it), for the plot and the report."""
    space = search.config.space
    rounding = "gptq" if "gptq" in space.roundings else space.roundings[0]
    out = []
    for weight in ("int8", "int4"):
        key = f"{weight}/{rounding}/{space.activations[0]}"
        plan = space.plan({layer.name: key for layer in ev.layers})
        value = ev.evaluate(plan).value
        out.append({"plan": key, "metric": value, "bytes": ev.payload_bytes(plan)})
    return out


def _closest_misses(search: Search, records: list[TrialRecord]) -> list[TrialRecord]:
    """The trial nearest to feasibility (smallest summed violation).

    Completed trials first; when every trial was pruned, trials pruned on a
    prefix of the data (their metric is that prefix's) -- the chosen plan is then
    scored on the whole split when it is packed.
    """
    done = [r for r in records if r.state == "complete" and r.metric is not None]
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
        metrics = ev.scores(loaded.module())
        value = metrics[search.config.metric]
        file_bytes = save_artifact(qm, partial, source_sha256=source_sha256, metrics=metrics)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return {
        "trial": chosen.record.number,
        "plan": plan.to_json(),
        "metric": value,
        "metrics": metrics,
        "integer_metric": chosen.integer_metric,
        "integer_only": chosen.integer_only,
        "payload_bytes": loaded.payload_bytes,
        "file_bytes": file_bytes,
        "compression": search.float_bytes / loaded.payload_bytes,
    }


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
