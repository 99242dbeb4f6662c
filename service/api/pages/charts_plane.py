"""The metric-against-bytes plane the front charts share: its frame, axes, lines and marks.

A chart :data:`WIDTH` x :data:`HEIGHT` user units, the plot inside the margins; the x
axis payload bytes (log when they span more than :data:`charts.LOG_SPAN` times), the y
axis the metric. :mod:`service.api.pages.charts_front` draws one job on it,
:mod:`service.api.pages.charts_compare` several.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    "BOTTOM",
    "HEIGHT",
    "LEFT",
    "RIGHT",
    "TARGET_LINE",
    "TOP",
    "WIDTH",
    "ChosenPoint",
    "TrialPoint",
    "axes",
    "chosen_mark",
    "clamp",
    "empty_chart",
    "hline",
    "plan_lines",
    "scales",
    "size_text",
    "star",
    "step_path",
    "trial_title",
    "vline",
]

WIDTH, HEIGHT = 780, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 24, 24, 50
TARGET_LINE = 'stroke="#c0362c" stroke-dasharray="6 4"'


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
class ChosenPoint:
    """The plan the job chose (trial ``number``)."""

    number: int | None
    metric: float
    bytes: int


def size_text(n: int) -> str:
    """``1938`` → ``"1.89 KiB (1,938 B)"``: human and exact."""
    return f"{fmt_bytes(n)} ({n:,} B)"


def hline(cls: str, py: float, paint: str = "", title: str = "") -> str:
    """A horizontal ``line.<cls>`` across the plot at pixel row ``py``, with a tooltip."""
    tip = f"<title>{esc(title)}</title>" if title else ""
    at = f'x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"'
    return f'<line class="{cls}" {at} {paint}>{tip}</line>'


def vline(cls: str, px: float, paint: str = "", title: str = "", *, top: int = TOP) -> str:
    """A vertical ``line.<cls>`` down the plot at pixel column ``px``, with a tooltip."""
    tip = f"<title>{esc(title)}</title>" if title else ""
    at = f'x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{HEIGHT - BOTTOM}"'
    return f'<line class="{cls}" {at} {paint}>{tip}</line>'


def plan_lines(plan: Mapping[str, str]) -> str:
    """A plan for a tooltip: one ``layer: choice`` line per layer."""
    return "".join(f"\n{layer}: {fmt}" for layer, fmt in plan.items())


def trial_title(t: TrialPoint, metric: str) -> str:
    """A trial's tooltip head: number, metric, size, state, front, source."""
    state = t.state if t.state != "complete" else ("feasible" if t.feasible else "infeasible")
    extra = ", on the front" if t.on_front else ""
    head = f"trial {t.number}: {metric} {fmt_metric(t.metric)}, {size_text(t.bytes)}"
    return f"{head}, {state}{extra}" + (f"\nsource: {t.source}" if t.source else "")


def scales(xs: Sequence[float], ys: Sequence[float], *, top: int = TOP) -> tuple[Scale, Scale]:
    """The x (bytes, log when wide) and y (metric, linear) scales of the plot area."""
    x = pick_scale(xs, LEFT, WIDTH - RIGHT, log_ok=True)
    y = pick_scale(ys, HEIGHT - BOTTOM, top, log_ok=False)
    return x, y


def axes(x: Scale, y: Scale, *, metric: str, higher_is_better: bool, top: int = TOP) -> list[str]:
    """Gridlines, tick labels, both axes and their titles (which way is better)."""
    out = []
    for value, label in metric_ticks(y):
        py = y(value)
        out.append(hline("gridline", py))
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{esc(label)}</text>')
    for value, label in byte_ticks(x):
        px = x(value)
        out.append(vline("gridline", px, top=top))
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


def clamp(y: Scale, value: float) -> tuple[float, bool]:
    """The pixel row of ``value`` held inside the y domain, and whether it was outside."""
    lo, hi = min(y.lo, y.hi), max(y.lo, y.hi)
    inside = lo <= value <= hi
    return y(min(max(value, lo), hi)), not inside


def step_path(points: Sequence[TrialPoint], x: Scale, y: Scale) -> str:
    """A front as steps: across to the next point's bytes, then to its metric."""
    pts = sorted(points, key=lambda p: p.bytes)
    if not pts:
        return ""
    d = f"M{x(pts[0].bytes):.1f},{clamp(y, pts[0].metric)[0]:.1f}"
    for p in pts[1:]:
        d += f" H{x(p.bytes):.1f} V{clamp(y, p.metric)[0]:.1f}"
    return d


def star(cx: float, cy: float, r: float) -> str:
    """Path data of a five-pointed star of outer radius ``r`` centred on (cx, cy)."""
    pts = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.45
        angle = math.pi / 2 + i * math.pi / 5
        pts.append(f"{cx + radius * math.cos(angle):.1f},{cy - radius * math.sin(angle):.1f}")
    return "M" + " L".join(pts) + " Z"


def chosen_mark(c: ChosenPoint, x: Scale, y: Scale, metric: str, colour: str) -> str:
    """The ``path.chosen`` star of a chosen plan, with its tooltip and table row link."""
    cy, _ = clamp(y, c.metric)
    which = f"trial {c.number}" if c.number is not None else "the chosen plan"
    title = f"chosen: {which}, {metric} {fmt_metric(c.metric)}, {size_text(c.bytes)}"
    row = attrs(data_row=f"trial-{c.number}" if c.number is not None else None)
    return (
        f'<path class="chosen" d="{star(x(c.bytes), cy, 9)}" fill="{colour}" '
        f'stroke="#fff" stroke-width="1" {row}><title>{esc(title)}</title></path>'
    )


def empty_chart(id_: str, label: str, text: str) -> Markup:
    """A short chart ``svg#<id_>`` that only says ``text`` (nothing to draw yet)."""
    return Markup(
        svg_open(id_=id_, width=WIDTH, height=160, label=label)
        + f'<text class="empty" x="{WIDTH / 2:.0f}" y="84" text-anchor="middle">{esc(text)}</text>'
        + "</svg>"
    )
