"""What the job and compare pages show of a job, as plain values: its plan per layer, its chart.

Pure functions of a job row's documents (``config``, ``best``, ``result``), the model's
inventory and the trial records of its study (:func:`service.domain.job_trials`), so
that the job page and the compare page read a job the same way.

A finished job's plan is ``result.chosen.plan``; before that the page shows the best
plan so far (``best.plan``, choice keys such as ``"int4/gptq/a8"``). A layer a plan does
not name stays in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.data import METRICS
from engine.errors import MPQError
from engine.io import predict_payload_bytes
from engine.quant import LayerFormat, QuantPlan, weight_format
from search import Targets
from service.api.pages.charts_front import ChosenPoint, FrontChart, UniformPoint, trial_points
from service.api.pages.charts_plan import LayerBar
from service.db.models import Job

__all__ = [
    "FLOAT_CHOICE",
    "front_chart",
    "higher_is_better",
    "job_targets",
    "layer_bars",
    "plan_choices",
    "split_choice",
]

FLOAT_CHOICE = "fp32/-/float"
"""The choice key of a layer a plan leaves in floating point."""


def higher_is_better(metric: str) -> bool:
    """Whether a larger ``metric`` is better (accuracy: yes; kl: no; unknown: yes)."""
    info = METRICS.get(metric)
    return True if info is None else bool(info.higher_is_better)


def split_choice(key: str) -> tuple[str, str, str]:
    """``"int4/gptq/a8"`` → ``("int4", "gptq", "a8")``; a bare format gets ``"-"`` for the rest."""
    parts = key.split("/")
    parts += ["-"] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def plan_choices(job: Job) -> tuple[dict[str, str], int | None]:
    """The job's plan as choice keys per layer and its trial: the chosen one, else the best.

    Empty (and None) before any trial finished.
    """
    chosen = (job.result or {}).get("chosen")
    if chosen and isinstance(chosen.get("plan"), Mapping):
        layers = chosen["plan"].get("layers") or {}
        out = {}
        for name, fmt in layers.items():
            weight = str(fmt.get("weight", "fp32"))
            rounding = "-" if _is_float(weight) else str(fmt.get("rounding", "nearest"))
            out[name] = f"{weight}/{rounding}/{fmt.get('activation', 'a8')}"
        return out, chosen.get("trial")
    best = job.best or {}
    return {str(k): str(v) for k, v in (best.get("plan") or {}).items()}, best.get("number")


def _is_float(weight: str) -> bool:
    try:
        return weight_format(weight).is_float
    except MPQError:
        return False


def _layer_bytes(name: str, key: str, shape: Sequence[int]) -> int | None:
    weight, rounding, activation = split_choice(key)
    try:
        fmt = LayerFormat(weight, activation=activation)
        if rounding not in ("-", "nearest"):
            fmt = LayerFormat(weight, activation=activation, rounding=rounding)  # type: ignore[arg-type]
        return predict_payload_bytes(QuantPlan({name: fmt}), {name: tuple(shape)}, 0)
    except (MPQError, ValueError, TypeError):
        return None


def layer_bars(
    inventory: Sequence[Mapping[str, Any]],
    choices: Mapping[str, str],
    *,
    sensitivity: Mapping[str, Mapping[str, float]] | None = None,
    float_layers: Mapping[str, str] | None = None,
) -> list[LayerBar]:
    """One :class:`LayerBar` per inventory layer (the model's order), as ``choices`` has it.

    ``sensitivity[layer][choice]`` is the damage of a choice (``result.sensitivity``);
    ``float_layers`` the reasons layers stayed in floating point (``chosen.float_layers``).
    """
    sensitivity = sensitivity or {}
    float_layers = float_layers or {}
    out = []
    for layer in inventory:
        name = str(layer["name"])
        key = choices.get(name, FLOAT_CHOICE)
        weight, rounding, activation = split_choice(key)
        try:
            spec = weight_format(weight)
            scheme, bits = spec.scheme, float(spec.bits)
        except MPQError:
            scheme, bits = "", None
        damage = sensitivity.get(name, {}).get(key)
        shape = tuple(int(d) for d in layer.get("weight_shape") or ())
        out.append(
            LayerBar(
                name=name,
                kind=str(layer.get("kind", "")),
                params=int(layer.get("params") or math.prod(shape) or 0),
                weight=weight,
                scheme=scheme,
                bits=bits,
                rounding=rounding,
                activation=activation,
                bytes=_layer_bytes(name, key, shape) if shape else None,
                damage=None if damage is None else float(damage),
                float_reason=float_layers.get(name),
                shape=shape,
            )
        )
    return out


def job_targets(job: Job) -> dict[str, Any]:
    """The job's targets as numbers: ``metric_floor``, ``metric_ceiling``, ``byte_ceiling``.

    A finished job's come from its result; while it runs they are worked out the same
    way from its spec and its baseline (none before the baseline is measured).
    """
    found = (job.result or {}).get("targets")
    if found:
        return dict(found)
    baseline = job.baseline or {}
    if baseline.get("metric") is None:
        return {}
    try:
        targets = Targets.from_json(job.config.get("targets") or {})
        float_bytes = baseline.get("bytes")
        return {
            "metric_floor": targets.metric_floor(float(baseline["metric"])),
            "metric_ceiling": targets.metric_ceiling(),
            "byte_ceiling": targets.byte_ceiling(int(float_bytes)) if float_bytes else None,
        }
    except (MPQError, KeyError, TypeError, ValueError):
        return {}


def front_chart(job: Job, records: Sequence[Mapping[str, Any]], front: Sequence[int]) -> FrontChart:
    """The Pareto chart of ``job``: its trials, the front, baselines, choice and targets.

    A finished job's front, uniform baselines and choice come from its result; a
    running job's front from its study (``front``), with no choice yet.
    """
    result = job.result or {}
    metric = str(job.config.get("metric", "metric"))
    numbers = result.get("front", front)
    chosen = result.get("chosen")
    point = None
    if chosen and chosen.get("metric") is not None and chosen.get("payload_bytes"):
        metric_value, size = float(chosen["metric"]), int(chosen["payload_bytes"])
        point = ChosenPoint(chosen.get("trial"), metric_value, size)
    targets = job_targets(job)
    baseline = (job.baseline or {}).get("metric")
    uniform = [
        UniformPoint(str(u["plan"]), float(u["metric"]), int(u["bytes"]), u.get("trial"))
        for u in result.get("uniform") or []
        if u.get("metric") is not None and u.get("bytes")
    ]
    return FrontChart(
        metric=metric,
        higher_is_better=higher_is_better(metric),
        trials=trial_points(records, numbers),
        uniform=uniform,
        chosen=point,
        floor=targets.get("metric_floor" if higher_is_better(metric) else "metric_ceiling"),
        ceiling=targets.get("byte_ceiling"),
        baseline=None if baseline is None else float(baseline),
    )
