"""Several jobs' Pareto fronts on one chart (``svg#fronts``), for the compare page.

Each job is a ``g.series`` in its own colour (:data:`SERIES_COLOURS`, in the order the
jobs were asked for): its front as a step line, its points with their plans in
tooltips, its chosen plan (or best so far) as a star; a legend of the jobs' labels runs
above the plot, wrapping onto more rows when they do not fit on one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from service.api.pages.charts import attrs, esc, svg_open
from service.api.pages.charts_plane import (
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    ChosenPoint,
    TrialPoint,
    axes,
    chosen_mark,
    clamp,
    empty_chart,
    plan_lines,
    scales,
    step_path,
    trial_title,
)

__all__ = ["SERIES_COLOURS", "Series", "fronts_svg"]

SERIES_COLOURS = ("#2f5bd3", "#d1495b", "#2a9d8f", "#e9a23b", "#7b4fb8", "#5c6b7a")
"""One colour per job on the compare chart, in the order the jobs were asked for."""


@dataclass(frozen=True)
class Series:
    """One job on the compare chart: its legend label, front points and chosen plan."""

    label: str
    points: Sequence[TrialPoint]
    chosen: ChosenPoint | None = None


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
        return empty_chart("fronts", label, "none of these jobs has a front yet")
    xs = [p.bytes for s in series for p in s.points]
    ys = [p.metric for s in series for p in s.points]
    xs += [s.chosen.bytes for s in series if s.chosen]
    ys += [s.chosen.metric for s in series if s.chosen]
    places, rows = _legend_places([s.label for s in series])
    top = TOP + LEGEND_ROW * (rows - 1)
    x, y = scales(xs, ys, top=top)
    out = [svg_open(id_="fronts", width=WIDTH, height=HEIGHT, label=label)]
    out += axes(x, y, metric=metric, higher_is_better=higher_is_better, top=top)
    for i, s in enumerate(series):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        out.append(f"<g {attrs(class_=f'series series-{i}', data_series=s.label)}>")
        out.append(f"<title>{esc(s.label)}</title>")
        if s.points:
            out.append(
                f'<path class="front-line" d="{step_path(s.points, x, y)}" fill="none" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        for p in s.points:
            title = f"{s.label}: " + trial_title(p, metric) + plan_lines(p.plan)
            cx, cy = x(p.bytes), clamp(y, p.metric)[0]
            out.append(
                f'<circle class="trial front" cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}">'
                f"<title>{esc(title)}</title></circle>"
            )
        if s.chosen is not None:
            out.append(chosen_mark(s.chosen, x, y, metric, colour))
        lx, ly = places[i]
        out.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{colour}"/>'
            f'<text class="legend-label" x="{lx + 16}" y="{ly + 10}">{esc(_short(s.label))}</text>'
        )
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))
