"""Metric against payload bytes: a job's trials and Pareto front, or several jobs' fronts.

:func:`front_svg` draws one job (``svg#front``): every evaluated trial a small circle
(``circle.trial``; pruned or infeasible ones hollow and grey), the front as a step line
(``path.front-line``: with at most that many bytes, the best metric reached), the
uniform baselines as labelled squares (``g.uniform``), the chosen plan as a star
(``.chosen``), the metric floor and byte ceiling as dashed lines. :func:`fronts_svg`
overlays the fronts of several jobs (``svg#fronts``, one ``g.series`` each).

The x axis is logarithmic when the bytes span more than :data:`charts.LOG_SPAN` times,
else linear. The y axis covers the front, the baselines and the targets, and the other
trials near them: a trial far worse (an int2 plan pruned at 10% accuracy) would squash
everything that matters into a sliver, so it is drawn on the axis's edge (``.clipped``)
with its true value in its tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup

from service.api.pages.charts import (
    Scale,
    attrs,
    byte_ticks,
    esc,
    metric_ticks,
    pick_scale,
    svg_open,
)
from service.api.pages.render import fmt_bytes, fmt_metric

__all__ = [
    "SERIES_COLOURS",
    "ChosenPoint",
    "FrontChart",
    "Series",
    "TrialPoint",
    "UniformPoint",
    "front_svg",
    "fronts_svg",
    "trial_points",
]

WIDTH, HEIGHT = 780, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 24, 50

SERIES_COLOURS = ("#2f5bd3", "#d1495b", "#2a9d8f", "#e9a23b", "#7b4fb8", "#5c6b7a")
"""One colour per job on the compare chart, in the order the jobs were asked for."""

_TRIAL, _HOLLOW, _FRONT, _UNIFORM, _CHOSEN = "#7f9cc7", "#a0a7b4", "#1d4fb8", "#c2620a", "#d22"
_HOLLOW_PAINT = f'fill="#fff" stroke="{_HOLLOW}" stroke-width="1.2"'
_TARGET_LINE = 'stroke="#c0362c" stroke-dasharray="6 4"'


def _size(n: int) -> str:
    return f"{fmt_bytes(n)} ({n:,} B)"


def _hline(cls: str, py: float, paint: str = "", title: str = "") -> str:
    tip = f"<title>{esc(title)}</title>" if title else ""
    at = f'x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"'
    return f'<line class="{cls}" {at} {paint}>{tip}</line>'


def _vline(cls: str, px: float, paint: str = "", title: str = "", *, top: int = TOP) -> str:
    tip = f"<title>{esc(title)}</title>" if title else ""
    at = f'x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{HEIGHT - BOTTOM}"'
    return f'<line class="{cls}" {at} {paint}>{tip}</line>'


@dataclass(frozen=True)
class TrialPoint:
    """One evaluated trial: its number, metric, payload bytes, state and plan per layer."""

    number: int
    metric: float
    bytes: int
    state: str = "complete"
    feasible: bool = True
    source: str = ""
    plan: Mapping[str, str] = field(default_factory=dict)
    on_front: bool = False

    @property
    def solid(self) -> bool:
        """Completed and within the targets (drawn filled); else hollow and grey."""
        return self.state == "complete" and self.feasible


@dataclass(frozen=True)
class UniformPoint:
    """A uniform baseline: every layer in ``plan`` ("int8/gptq/a8"), its trial if known."""

    plan: str
    metric: float
    bytes: int
    trial: int | None = None


@dataclass(frozen=True)
class ChosenPoint:
    """The plan the job chose (trial ``number``)."""

    number: int | None
    metric: float
    bytes: int


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


@dataclass(frozen=True)
class Series:
    """One job on the compare chart: its legend label, front points and chosen plan."""

    label: str
    points: Sequence[TrialPoint]
    chosen: ChosenPoint | None = None


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


def _plan_lines(plan: Mapping[str, str]) -> str:
    return "".join(f"\n{layer}: {fmt}" for layer, fmt in plan.items())


def _trial_title(t: TrialPoint, metric: str) -> str:
    state = t.state if t.state != "complete" else ("feasible" if t.feasible else "infeasible")
    extra = ", on the front" if t.on_front else ""
    head = f"trial {t.number}: {metric} {fmt_metric(t.metric)}, {_size(t.bytes)}"
    return f"{head}, {state}{extra}" + (f"\nsource: {t.source}" if t.source else "")


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


def _scales(xs: Sequence[float], ys: Sequence[float], *, top: int = TOP) -> tuple[Scale, Scale]:
    x = pick_scale(xs, LEFT, WIDTH - RIGHT, log_ok=True)
    y = pick_scale(ys, HEIGHT - BOTTOM, top, log_ok=False)
    return x, y


def _axes(x: Scale, y: Scale, *, metric: str, higher_is_better: bool, top: int = TOP) -> list[str]:
    out = []
    for value, label in metric_ticks(y):
        py = y(value)
        out.append(_hline("gridline", py))
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{esc(label)}</text>')
    for value, label in byte_ticks(x):
        px = x(value)
        out.append(_vline("gridline", px, top=top))
        below = HEIGHT - BOTTOM + 16
        out.append(f'<text x="{px:.1f}" y="{below}" text-anchor="middle">{esc(label)}</text>')
    base = HEIGHT - BOTTOM
    out.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>')
    out.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{top}" y2="{base}"/>')
    scale = "log scale" if x.log else "linear scale"
    out.append(
        f'<text class="axis-title" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" y="{HEIGHT - 10}" '
        f'text-anchor="middle">payload bytes ({scale}; smaller is better)</text>'
    )
    better = "higher" if higher_is_better else "lower"
    mid = (top + base) / 2
    out.append(
        f'<text class="axis-title" x="14" y="{mid:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {mid:.0f})">{esc(metric)} ({better} is better)</text>'
    )
    return out


def _clamp(y: Scale, value: float) -> tuple[float, bool]:
    lo, hi = min(y.lo, y.hi), max(y.lo, y.hi)
    inside = lo <= value <= hi
    return y(min(max(value, lo), hi)), not inside


def _step_path(points: Sequence[TrialPoint], x: Scale, y: Scale) -> str:
    pts = sorted(points, key=lambda p: p.bytes)
    if not pts:
        return ""
    d = f"M{x(pts[0].bytes):.1f},{_clamp(y, pts[0].metric)[0]:.1f}"
    for p in pts[1:]:
        d += f" H{x(p.bytes):.1f} V{_clamp(y, p.metric)[0]:.1f}"
    return d


def _star(cx: float, cy: float, r: float) -> str:
    pts = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.45
        angle = math.pi / 2 + i * math.pi / 5
        pts.append(f"{cx + radius * math.cos(angle):.1f},{cy - radius * math.sin(angle):.1f}")
    return "M" + " L".join(pts) + " Z"


def _chosen_mark(c: ChosenPoint, x: Scale, y: Scale, metric: str, colour: str) -> str:
    cy, _ = _clamp(y, c.metric)
    which = f"trial {c.number}" if c.number is not None else "the chosen plan"
    title = f"chosen: {which}, {metric} {fmt_metric(c.metric)}, {_size(c.bytes)}"
    row = attrs(data_row=f"trial-{c.number}" if c.number is not None else None)
    return (
        f'<path class="chosen" d="{_star(x(c.bytes), cy, 9)}" fill="{colour}" '
        f'stroke="#fff" stroke-width="1" {row}><title>{esc(title)}</title></path>'
    )


def _targets(chart: FrontChart, x: Scale, y: Scale) -> list[str]:
    out = []
    if chart.baseline is not None:
        py, _ = _clamp(y, chart.baseline)
        title = f"float model: {fmt_metric(chart.baseline)}"
        out.append(_hline("baseline", py, 'stroke="#98a2b3" stroke-dasharray="1 3"', title))
        words = f"float {fmt_metric(chart.baseline)}"
        out.append(f'<text x="{LEFT + 6}" y="{py - 4:.1f}">{esc(words)}</text>')
    if chart.floor is not None:
        py, _ = _clamp(y, chart.floor)
        words = "metric floor" if chart.higher_is_better else "metric ceiling"
        label = f"{words} {fmt_metric(chart.floor)}"
        out.append(_hline("floor", py, _TARGET_LINE, label))
        at = f'x="{WIDTH - RIGHT - 4}" y="{py + 14:.1f}" text-anchor="end"'
        out.append(f'<text {at} fill="#c0362c">{esc(label)}</text>')
    if chart.ceiling is not None:
        px = x(chart.ceiling)
        label = f"size ceiling {fmt_bytes(chart.ceiling)}"
        out.append(_vline("ceiling", px, _TARGET_LINE, label))
        out.append(f'<text x="{px + 4:.1f}" y="{TOP + 12}" fill="#c0362c">{esc(label)}</text>')
    return out


def _empty(id_: str, label: str, text: str) -> Markup:
    return Markup(
        svg_open(id_=id_, width=WIDTH, height=160, label=label)
        + f'<text class="empty" x="{WIDTH / 2:.0f}" y="84" text-anchor="middle">{esc(text)}</text>'
        + "</svg>"
    )


def front_svg(chart: FrontChart) -> Markup:
    """``svg#front`` for one job (see the module's docstring); "no trials yet" when empty."""
    label = f"{chart.metric} against payload bytes of every trial"
    if not chart.trials and not chart.uniform and chart.chosen is None:
        return _empty("front", label, "no trials yet")
    xs = [float(t.bytes) for t in chart.trials] + [float(u.bytes) for u in chart.uniform]
    xs += [float(chart.chosen.bytes)] if chart.chosen else []
    xs += [float(chart.ceiling)] if chart.ceiling is not None else []
    x, y = _scales(xs, _y_values(chart))
    out = [svg_open(id_="front", width=WIDTH, height=HEIGHT, label=label)]
    out += _axes(x, y, metric=chart.metric, higher_is_better=chart.higher_is_better)
    out += _targets(chart, x, y)
    front = [t for t in chart.trials if t.on_front]
    if front:
        out.append(
            f'<path class="front-line" d="{_step_path(front, x, y)}" fill="none" '
            f'stroke="{_FRONT}" stroke-width="2"><title>Pareto front: {len(front)} plans no '
            "other beats on both metric and size</title></path>"
        )
    clipped = 0
    for t in sorted(chart.trials, key=lambda t: t.on_front):  # the front's points on top
        cy, off = _clamp(y, t.metric)
        clipped += off
        classes = ["trial"] + (["front"] if t.on_front else [])
        classes += [] if t.solid else ["hollow"]
        classes += ["clipped"] if off else []
        colour = _FRONT if t.on_front else _TRIAL
        paint = f'fill="{colour}"' if t.solid else _HOLLOW_PAINT
        title = _trial_title(t, chart.metric) + _plan_lines(t.plan)
        out.append(
            f"<circle {attrs(class_=' '.join(classes), data_row=f'trial-{t.number}')} "
            f'cx="{x(t.bytes):.1f}" cy="{cy:.1f}" r="{4.5 if t.on_front else 3.5}" {paint}>'
            f"<title>{esc(title)}</title></circle>"
        )
    for u in chart.uniform:
        px, (py, _) = x(u.bytes), _clamp(y, u.metric)
        short = u.plan.split("/")[0]
        title = (
            f"uniform {u.plan}"
            + (f" (trial {u.trial})" if u.trial is not None else "")
            + f": {chart.metric} {fmt_metric(u.metric)}, {_size(u.bytes)}"
        )
        row = attrs(data_row=f"trial-{u.trial}" if u.trial is not None else None)
        out.append(
            f'<g class="uniform"><title>{esc(title)}</title>'
            f'<rect x="{px - 5:.1f}" y="{py - 5:.1f}" width="10" height="10" '
            f'fill="{_UNIFORM}" {row}/>'
            f'<text x="{px + 8:.1f}" y="{py - 7:.1f}" fill="{_UNIFORM}">all {esc(short)}</text></g>'
        )
    if chart.chosen is not None:
        out.append(_chosen_mark(chart.chosen, x, y, chart.metric, _CHOSEN))
    if clipped:
        note = f"{clipped} trial{'s' if clipped > 1 else ''} far off, drawn on the edge (hover)"
        at = f'x="{WIDTH - RIGHT}" y="{TOP - 8}"'
        out.append(f'<text class="note" {at} text-anchor="end">{esc(note)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


LEGEND_ROW = 16
LEGEND_CHARS = 26


def _short(label: str) -> str:
    return label if len(label) <= LEGEND_CHARS else label[: LEGEND_CHARS - 1] + "\u2026"


def _legend_places(labels: Sequence[str]) -> tuple[list[tuple[int, int]], int]:
    """Where each legend entry goes (left to right, wrapping) and how many rows it takes."""
    places, x, row = [], LEFT, 0
    for label in labels:
        width = 36 + 7 * len(_short(label))
        if x + width > WIDTH - RIGHT and x > LEFT:
            x, row = LEFT, row + 1
        places.append((x, 6 + LEGEND_ROW * row))
        x += width
    return places, row + 1


def fronts_svg(series: Sequence[Series], *, metric: str, higher_is_better: bool) -> Markup:
    """``svg#fronts``: each job's front as a step line in its colour, its choice a star."""
    label = f"Pareto fronts of {len(series)} jobs: {metric} against payload bytes"
    if not any(s.points for s in series):
        return _empty("fronts", label, "none of these jobs has a front yet")
    xs = [p.bytes for s in series for p in s.points]
    ys = [p.metric for s in series for p in s.points]
    xs += [s.chosen.bytes for s in series if s.chosen]
    ys += [s.chosen.metric for s in series if s.chosen]
    places, rows = _legend_places([s.label for s in series])
    top = TOP + LEGEND_ROW * (rows - 1)
    x, y = _scales(xs, ys, top=top)
    out = [svg_open(id_="fronts", width=WIDTH, height=HEIGHT, label=label)]
    out += _axes(x, y, metric=metric, higher_is_better=higher_is_better, top=top)
    for i, s in enumerate(series):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        out.append(f"<g {attrs(class_=f'series series-{i}', data_series=s.label)}>")
        out.append(f"<title>{esc(s.label)}</title>")
        if s.points:
            out.append(
                f'<path class="front-line" d="{_step_path(s.points, x, y)}" fill="none" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        for p in s.points:
            title = f"{s.label}: " + _trial_title(p, metric) + _plan_lines(p.plan)
            cx, cy = x(p.bytes), _clamp(y, p.metric)[0]
            out.append(
                f'<circle class="trial front" cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}">'
                f"<title>{esc(title)}</title></circle>"
            )
        if s.chosen is not None:
            out.append(_chosen_mark(s.chosen, x, y, metric, colour))
        lx, ly = places[i]
        out.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/>'
            f'<text class="legend-label" x="{lx + 16}" y="{ly + 10}">{esc(_short(s.label))}</text>'
        )
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))
