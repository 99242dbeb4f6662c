"""The sensitivity heatmap: a model's layers (rows) by weight formats (columns), as SVG.

Each cell's colour is the damage quantizing that one layer to that format did (the
job result's ``sensitivity``: ``{layer: {"int4/gptq/a8": damage}}``), on a log scale
between the smallest positive and the largest damage of the table: light yellow is
harmless, dark red ruinous. Damages of zero or below are drawn as the lightest colour.
Every cell carries a ``<title>`` with the exact value; a layer and format the job did
not measure is an empty cell titled so. Below the grid a legend shows the scale.

Built on the server as a string: every name is escaped (a layer name comes from the
uploaded model, a format from the stored result), and the SVG uses presentation
attributes only (the pages' Content-Security-Policy allows no inline style).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

__all__ = ["COLOURS", "damage_colour", "heatmap_columns", "sensitivity_heatmap"]

COLOURS = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#f03b20", "#bd0026", "#800026")
"""The colour ramp, least to most damage (ColorBrewer YlOrRd)."""

CELL_W, CELL_H = 34, 22
LABEL_CHARS = 28  # a longer name is cut (the full name is in its cell's and row's titles)
CHAR_W = 6.2  # width of a label character at the chart's 10px monospace font
LEGEND_H = 50
# format labels are written at 60 degrees: their width and height per character
_COS, _SIN = 0.5, 0.87


def damage_colour(value: float, lo: float, hi: float) -> str:
    """The colour of ``value`` on a log scale from ``lo`` to ``hi`` (both > 0).

    ``value <= lo`` (zero and negatives included) is the first colour, ``value >= hi``
    the last; between, ``log10(value)`` picks one of :data:`COLOURS` linearly.
    """
    if math.isnan(value) or value <= lo:
        return COLOURS[0]
    if value >= hi:
        return COLOURS[-1]
    t = (math.log10(value) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return COLOURS[min(int(t * len(COLOURS)), len(COLOURS) - 1)]


def heatmap_columns(damage: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Every format of ``damage``, in the order first seen (the job's own order)."""
    seen: dict[str, None] = {}
    for cells in damage.values():
        seen.update(dict.fromkeys(cells))
    return list(seen)


def _bounds(damage: Mapping[str, Mapping[str, float]]) -> tuple[float, float] | None:
    values = [v for cells in damage.values() for v in cells.values() if math.isfinite(v) and v > 0]
    return (min(values), max(values)) if values else None


def _label(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "\u2026"


def _number(value: float) -> str:
    return f"{value:.4g}"


def sensitivity_heatmap(
    layers: Sequence[str],
    damage: Mapping[str, Mapping[str, float]],
    *,
    svg_id: str = "sensitivity",
    row_ids: Mapping[str, str] | None = None,
) -> Markup:
    """The heatmap of ``damage`` with one row per layer: ``layers`` in order, then any
    other layer ``damage`` names; one column per format (:func:`heatmap_columns`).

    Args:
        layers: the model's layers in inventory order.
        damage: ``{layer: {format: damage}}``; missing entries are drawn empty.
        svg_id: the ``id`` of the ``<svg>`` element.
        row_ids: layer → the id of a table row the cells highlight on hover
            (``data-row``), for the layers that have one.
    """
    rows = list(dict.fromkeys([*layers, *damage]))
    cols = heatmap_columns(damage)
    bounds = _bounds(damage)
    left = 12 + CHAR_W * max([len(_label(r)) for r in rows] + [6])
    col_chars = max([len(_label(c)) for c in cols] + [4])
    top = round(16 + CHAR_W * col_chars * _SIN)
    width = left + CELL_W * max(len(cols), 1) + max(CHAR_W * col_chars * _COS, 100)
    grid_h = CELL_H * len(rows)
    height = top + grid_h + LEGEND_H
    out = [
        f'<svg id="{escape(svg_id)}" class="chart heatmap" viewBox="0 0 {width:.0f} {height}" '
        f'width="{width:.0f}" height="{height}" role="img" '
        f'aria-label="damage per layer and format, {len(rows)} layers by {len(cols)} formats">'
    ]
    for j, fmt in enumerate(cols):
        x, y = left + CELL_W * j + CELL_W / 2, top - 6
        out.append(
            f'<text class="col" x="{x:.1f}" y="{y}" transform="rotate(-60 {x:.1f} {y})">'
            f"<title>{escape(fmt)}</title>{escape(_label(fmt))}</text>"
        )
    for i, layer in enumerate(rows):
        y = top + CELL_H * i
        out.append(f'<g class="row" data-layer="{escape(layer)}">')
        out.append(
            f'<text class="layer" x="{left - 6:.1f}" y="{y + CELL_H - 7}" text-anchor="end">'
            f"<title>{escape(layer)}</title>{escape(_label(layer))}</text>"
        )
        cells = damage.get(layer, {})
        link = (row_ids or {}).get(layer)
        data_row = f' data-row="{escape(link)}"' if link else ""
        for j, fmt in enumerate(cols):
            x = left + CELL_W * j
            value = cells.get(fmt)
            if value is None:
                out.append(
                    f'<rect class="cell missing" x="{x:.1f}" y="{y}" width="{CELL_W - 1}" '
                    f'height="{CELL_H - 1}" fill="none" stroke="#e3e6ec"{data_row}>'
                    f"<title>{escape(layer)} · {escape(fmt)}: not measured</title></rect>"
                )
                continue
            colour = COLOURS[0] if bounds is None else damage_colour(value, *bounds)
            out.append(
                f'<rect class="cell" x="{x:.1f}" y="{y}" width="{CELL_W - 1}" '
                f'height="{CELL_H - 1}" fill="{colour}" data-value="{value!r}"{data_row}>'
                f"<title>{escape(layer)} · {escape(fmt)}: damage {value!r}</title></rect>"
            )
        out.append("</g>")
    out.append(_legend(left, top + grid_h + 16, bounds))
    out.append("</svg>")
    return Markup("".join(out))


def _legend(x0: float, y: float, bounds: tuple[float, float] | None) -> str:
    """The colour scale: one swatch per colour, the damage range at its ends."""
    parts = ['<g class="scale">']
    parts.append(f'<text x="{x0 - 6:.1f}" y="{y + 12}" text-anchor="end">damage</text>')
    for k, colour in enumerate(COLOURS):
        parts.append(
            f'<rect x="{x0 + 22 * k:.1f}" y="{y}" width="22" height="14" fill="{colour}"/>'
        )
    end = x0 + 22 * len(COLOURS)
    if bounds is None:
        parts.append(f'<text x="{end + 8:.1f}" y="{y + 12}">no positive damage measured</text>')
    else:
        lo, hi = bounds
        parts.append(f'<text x="{x0:.1f}" y="{y + 28}">\u2264 {_number(lo)}</text>')
        parts.append(f'<text x="{end:.1f}" y="{y + 28}" text-anchor="end">{_number(hi)}</text>')
        parts.append(f'<text x="{end + 8:.1f}" y="{y + 12}">log scale</text>')
    parts.append("</g>")
    return "".join(parts)
