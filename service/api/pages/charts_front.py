"""Metric against payload bytes: one job's trials and its Pareto front.

:func:`front_svg` draws one job (``svg#front``): every evaluated trial a small circle
(``circle.trial``; pruned or infeasible ones hollow and grey), the front as a step line
(``path.front-line``: with at most that many bytes, the best metric reached), the
uniform baselines as labelled squares (``g.uniform``), the chosen plan as a star
(``.chosen``), the metric floor and byte ceiling as dashed lines.
(:mod:`service.api.pages.charts_compare` overlays several jobs' fronts.)

The x axis is logarithmic when the bytes span more than :data:`charts.LOG_SPAN` times,
else linear. The y axis covers the front, the baselines and the targets, and the other
trials near them: a trial far worse (an int2 plan pruned at 10% accuracy) would squash
everything that matters into a sliver, so it is drawn on the axis's edge (``.clipped``)
with its true value in its tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from service.api.pages.charts import Scale, attrs, esc, svg_open
from service.api.pages.charts_plane import (
    HEIGHT,
    LEFT,
    RIGHT,
    TARGET_LINE,
    TOP,
    WIDTH,
    ChosenPoint,
    TrialPoint,
    axes,
    chosen_mark,
    clamp,
    empty_chart,
    hline,
    plan_lines,
    scales,
    size_text,
    step_path,
    trial_title,
    vline,
)
from service.api.pages.render import fmt_bytes, fmt_metric

__all__ = [
    "ChosenPoint",
    "FrontChart",
    "TrialPoint",
    "UniformPoint",
    "front_svg",
    "trial_points",
]

_TRIAL, _HOLLOW, _FRONT, _UNIFORM, _CHOSEN = "#7f9cc7", "#a0a7b4", "#1d4fb8", "#c2620a", "#d22"
_HOLLOW_PAINT = f'fill="#fff" stroke="{_HOLLOW}" stroke-width="1.2"'


@dataclass(frozen=True)
class UniformPoint:
    """A uniform baseline: every layer in ``plan`` ("int8/gptq/a8"), its trial if known."""

    plan: str
    metric: float
    bytes: int
    trial: int | None = None


@dataclass(frozen=True)
class FrontChart:
    """What :func:`front_svg` draws. ``floor``/``ceiling``: the targets, when set."""

    metric: str
    higher_is_better: bool
    trials: Sequence[TrialPoint] = ()
    uniform: Sequence[UniformPoint] = ()
    chosen: ChosenPoint | None = None
    floor: float | None = None
    ceiling: int | None = None
    baseline: float | None = None


def trial_points(records: Sequence[Mapping[str, Any]], front: Sequence[int]) -> list[TrialPoint]:
    """Chart points of trial records (``GET /v1/jobs/{id}/trials``) that have a metric."""
    on_front = set(front)
    return [
        TrialPoint(
            number=int(r["number"]),
            metric=float(r["metric"]),
            bytes=int(r["bytes"]),
            state=str(r.get("state", "complete")),
            feasible=bool(r.get("feasible", True)),
            source=str(r.get("source") or ""),
            plan=dict(r.get("plan") or {}),
            on_front=int(r["number"]) in on_front,
        )
        for r in records
        if r.get("metric") is not None and math.isfinite(r["metric"]) and r.get("bytes")
    ]


def _y_values(chart: FrontChart) -> list[float]:
    key = [t.metric for t in chart.trials if t.on_front]
    key += [u.metric for u in chart.uniform]
    key += [v for v in (chart.floor, chart.baseline) if v is not None]
    key += [chart.chosen.metric] if chart.chosen else []
    if not key:
        return [t.metric for t in chart.trials]
    lo, hi = min(key), max(key)
    span = max(hi - lo, 1e-3 * max(abs(hi), 1e-9))
    near = [t.metric for t in chart.trials if lo - 2 * span <= t.metric <= hi + 2 * span]
    return key + near


def _targets(chart: FrontChart, x: Scale, y: Scale) -> list[str]:
    out = []
    if chart.baseline is not None:
        py, _ = clamp(y, chart.baseline)
        title = f"float model: {fmt_metric(chart.baseline)}"
        out.append(hline("baseline", py, 'stroke="#98a2b3" stroke-dasharray="1 3"', title))
        words = f"float {fmt_metric(chart.baseline)}"
        out.append(f'<text x="{LEFT + 6}" y="{py - 4:.1f}">{esc(words)}</text>')
    if chart.floor is not None:
        py, _ = clamp(y, chart.floor)
        words = "metric floor" if chart.higher_is_better else "metric ceiling"
        label = f"{words} {fmt_metric(chart.floor)}"
        out.append(hline("floor", py, TARGET_LINE, label))
        at = f'x="{WIDTH - RIGHT - 4}" y="{py + 14:.1f}" text-anchor="end"'
        out.append(f'<text {at} fill="#c0362c">{esc(label)}</text>')
    if chart.ceiling is not None:
        px = x(chart.ceiling)
        label = f"size ceiling {fmt_bytes(chart.ceiling)}"
        out.append(vline("ceiling", px, TARGET_LINE, label))
        out.append(f'<text x="{px + 4:.1f}" y="{TOP + 12}" fill="#c0362c">{esc(label)}</text>')
    return out


def front_svg(chart: FrontChart) -> Markup:
    """``svg#front`` for one job (see the module's docstring); "no trials yet" when empty."""
    label = f"{chart.metric} against payload bytes of every trial"
    if not chart.trials and not chart.uniform and chart.chosen is None:
        return empty_chart("front", label, "no trials yet")
    xs = [float(t.bytes) for t in chart.trials] + [float(u.bytes) for u in chart.uniform]
    xs += [float(chart.chosen.bytes)] if chart.chosen else []
    xs += [float(chart.ceiling)] if chart.ceiling is not None else []
    x, y = scales(xs, _y_values(chart))
    out = [svg_open(id_="front", width=WIDTH, height=HEIGHT, label=label)]
    out += axes(x, y, metric=chart.metric, higher_is_better=chart.higher_is_better)
    out += _targets(chart, x, y)
    front = [t for t in chart.trials if t.on_front]
    if front:
        out.append(
            f'<path class="front-line" d="{step_path(front, x, y)}" fill="none" '
            f'stroke="{_FRONT}" stroke-width="2"><title>Pareto front: {len(front)} plans no '
            "other beats on both metric and size</title></path>"
        )
    clipped = 0
    for t in sorted(chart.trials, key=lambda t: t.on_front):  # the front's points on top
        cy, off = clamp(y, t.metric)
        clipped += off
        classes = ["trial"] + (["front"] if t.on_front else [])
        classes += [] if t.solid else ["hollow"]
        classes += ["clipped"] if off else []
        colour = _FRONT if t.on_front else _TRIAL
        paint = f'fill="{colour}"' if t.solid else _HOLLOW_PAINT
        title = trial_title(t, chart.metric) + plan_lines(t.plan)
        out.append(
            f"<circle {attrs(class_=' '.join(classes), data_row=f'trial-{t.number}')} "
            f'cx="{x(t.bytes):.1f}" cy="{cy:.1f}" r="{4.5 if t.on_front else 3.5}" {paint}>'
            f"<title>{esc(title)}</title></circle>"
        )
    for u in chart.uniform:
        px, (py, _) = x(u.bytes), clamp(y, u.metric)
        short = u.plan.split("/")[0]
        title = (
            f"uniform {u.plan}"
            + (f" (trial {u.trial})" if u.trial is not None else "")
            + f": {chart.metric} {fmt_metric(u.metric)}, {size_text(u.bytes)}"
        )
        row = attrs(data_row=f"trial-{u.trial}" if u.trial is not None else None)
        out.append(
            f'<g class="uniform"><title>{esc(title)}</title>'
            f'<rect x="{px - 5:.1f}" y="{py - 5:.1f}" width="10" height="10" '
            f'fill="{_UNIFORM}" {row}/>'
            f'<text x="{px + 8:.1f}" y="{py - 7:.1f}" fill="{_UNIFORM}">all {esc(short)}</text></g>'
        )
    if chart.chosen is not None:
        out.append(chosen_mark(chart.chosen, x, y, chart.metric, _CHOSEN))
    if clipped:
        note = f"{clipped} trial{'s' if clipped > 1 else ''} far off, drawn on the edge (hover)"
        at = f'x="{WIDTH - RIGHT}" y="{TOP - 8}"'
        out.append(f'<text class="note" {at} text-anchor="end">{esc(note)}</text>')
    out.append("</svg>")
    return Markup("".join(out))
