"""SVG drawn on the server: scales, axis ticks and element helpers the dashboard's charts share.

The charts themselves are :mod:`service.api.pages.charts_front` (metric against payload
bytes: a job's trials and Pareto front), :mod:`service.api.pages.charts_compare`
(several jobs' fronts overlaid), both on the plane of :mod:`service.api.pages.charts_plane`,
and :mod:`service.api.pages.charts_plan` (a plan per layer). Each returns one ``<svg
class="chart">`` element as :class:`markupsafe.Markup`: presentation attributes only
(``fill=``, ``stroke=``...), never a ``style`` attribute, so the pages' CSP holds.

Every piece of text in a chart (a layer's name, a plan, a model's name) goes through
:func:`esc`, the one place text enters SVG markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import escape

from service.api.pages.render import fmt_bytes, fmt_metric

__all__ = [
    "LOG_SPAN",
    "Scale",
    "attrs",
    "byte_ticks",
    "esc",
    "metric_ticks",
    "pick_scale",
    "svg_open",
]

LOG_SPAN = 10.0
"""An axis whose largest value is more than this times its smallest is drawn on a log scale."""


def esc(text: object) -> str:
    """``text`` escaped for SVG text and attribute values (``<>&"'``)."""
    return str(escape(str(text)))


def attrs(**values: object) -> str:
    """``key="value"`` pairs, escaped; a trailing underscore is dropped, ``_`` becomes ``-``.

    ``attrs(class_="trial", data_row="trial-3")`` → ``class="trial" data-row="trial-3"``.
    None values are left out; floats are written to 2 decimals.
    """
    out = []
    for key, value in values.items():
        if value is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        out.append(f'{name}="{esc(text)}"')
    return " ".join(out)


def svg_open(*, id_: str, width: int, height: int, label: str) -> str:
    """The opening ``<svg>`` tag of a chart ``width`` x ``height`` user units wide, scaling."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" {attrs(id_=id_, class_="chart")} '
        f'viewBox="0 0 {width} {height}" role="img" {attrs(aria_label=label)}>'
    )


@dataclass(frozen=True)
class Scale:
    """A map from data values in ``[lo, hi]`` to pixels in ``[start, end]``, linear or log.

    ``end < start`` is allowed (a y axis grows upward: pixel rows count downward).
    """

    lo: float
    hi: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        """The pixel of ``value`` (clamped to the domain on a log scale for values <= 0)."""
        if self.log:
            a, b, v = math.log10(self.lo), math.log10(self.hi), math.log10(max(value, self.lo))
        else:
            a, b, v = self.lo, self.hi, value
        t = 0.5 if b == a else (v - a) / (b - a)
        return self.start + t * (self.end - self.start)


def pick_scale(values: Sequence[float], start: float, end: float, *, log_ok: bool) -> Scale:
    """A scale over ``values`` padded by 5%: log when ``log_ok``, all positive and max/min > 10.

    A single value (or none) gets a domain around it so that it lands mid-axis.
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Scale(0.0, 1.0, start, end)
    lo, hi = min(finite), max(finite)
    if log_ok and lo > 0 and hi / lo > LOG_SPAN:
        pad = (hi / lo) ** 0.05
        return Scale(lo / pad, hi * pad, start, end, log=True)
    if hi == lo:
        half = abs(lo) * 0.05 or 0.5
        return Scale(lo - half, hi + half, start, end)
    pad = (hi - lo) * 0.05
    return Scale(lo - pad, hi + pad, start, end)


def _nice_step(span: float, count: int) -> float:
    raw = span / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw)


def _linear_ticks(scale: Scale, count: int) -> list[float]:
    step = _nice_step(scale.hi - scale.lo, count)
    first = math.ceil(scale.lo / step) * step
    n = int((scale.hi - first) / step + 1e-9) + 1
    return [first + i * step for i in range(max(n, 0))]


def metric_ticks(scale: Scale, count: int = 5) -> list[tuple[float, str]]:
    """About ``count`` round values inside a linear metric scale, with their labels."""
    ticks = _linear_ticks(scale, count)
    return [(t, fmt_metric(0.0 if abs(t) < 1e-12 else t)) for t in ticks]


def byte_ticks(scale: Scale, count: int = 6) -> list[tuple[float, str]]:
    """Round byte counts inside a bytes scale, labelled in human units ("1.5 KiB").

    Round in binary units: on a log scale the powers of two inside (every second or
    fourth one when there are many more than ``count``); on a linear one, evenly spaced
    round multiples of the largest binary unit (B, KiB, MiB...) below the top value.
    """
    lo, hi = max(scale.lo, 0.0), scale.hi
    if scale.log:
        first, last = math.ceil(math.log2(max(lo, 1.0))), math.floor(math.log2(hi))
        powers = list(range(first, last + 1))
        stride = 1
        while len(powers[::stride]) > count:
            stride *= 2
        return [(2.0**k, fmt_bytes(2**k)) for k in powers[::stride]]
    unit = 1024.0 ** max(math.floor(math.log(max(hi, 1.0), 1024)), 0)
    ticks = _linear_ticks(Scale(lo / unit, hi / unit, 0, 1), count)
    return [(t * unit, fmt_bytes(t * unit)) for t in ticks if t >= 0]
