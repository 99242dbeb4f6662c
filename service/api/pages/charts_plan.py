"""A plan per layer (``svg#layers``): which layers got few bits, how much each weighs, and why.

One row (``g.layer``) per layer in the model's order: the layer's name and kind; a bar
as long as the bytes its weight takes in the plan's payload (or, when those are not
known, its parameter count: the chart's header says which), coloured by format family
(integer: blue, darker with more bits; codebook: green, likewise; fp16: orange; fp32:
grey) and labelled with the format, bits per weight, parameters and share; then the
layer's sensitivity for its chosen format -- the metric damage measured with that
layer alone quantized, lower is better -- as a small red bar and a number. Layers kept
in floating point on purpose (float islands) say so, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from service.api.pages.charts import attrs, esc, svg_open
from service.api.pages.render import fmt_bytes

__all__ = ["LayerBar", "format_colour", "layers_svg"]

WIDTH = 800
NAME_W, BAR_X, BAR_W = 170, 180, 240
SENS_X, SENS_W = 620, 120
ROW_H, HEAD_H, FOOT_H = 26, 30, 34

_INT = {2: "#b9d3f7", 3: "#93bbf0", 4: "#6d9fe6", 5: "#4d86da", 6: "#336dc7", 8: "#1d52a6"}
_CB = {2: "#b3e0c0", 3: "#8ccf9f", 4: "#62ba7c", 6: "#3c9c5a", 8: "#257a41"}
_FLOAT = {16: "#e9a23b", 32: "#98a2b3"}
_DAMAGE = "#d1495b"


def format_colour(scheme: str, bits: float | None) -> str:
    """The bar colour of a format: its family's shade for ``bits`` (nearest one known)."""
    table = {"affine": _INT, "codebook": _CB, "float": _FLOAT}.get(scheme)
    if table is None or bits is None:
        return "#c9ced8"
    nearest = min(table, key=lambda b: abs(b - bits))
    return table[nearest]


@dataclass(frozen=True)
class LayerBar:
    """One layer of a plan: its place in the model and what the plan gave it.

    ``weight`` is the weight format ("int5", "cb16", "fp32"); ``scheme`` its family
    (``affine``, ``codebook``, ``float``); ``bytes`` the weight's payload bytes in that
    format (None: unknown); ``damage`` the sensitivity of the chosen format (None: not
    measured); ``float_reason`` why the layer stayed in floating point, if it did.
    """

    name: str
    kind: str
    params: int
    weight: str
    scheme: str
    bits: float | None
    rounding: str = ""
    activation: str = ""
    bytes: int | None = None
    damage: float | None = None
    float_reason: str | None = None
    shape: tuple[int, ...] = ()


def _bits(b: float | None) -> str:
    if b is None:
        return "? bits"
    return f"{b:g} bit" + ("" if b == 1 else "s")


def _title(row: LayerBar, share: float | None) -> str:
    shape = "\u00d7".join(str(d) for d in row.shape)
    parts = [
        f"{row.name} ({row.kind}, {row.params:,} params" + (f", weight {shape})" if shape else ")"),
        f"format {row.weight} ({_bits(row.bits)} per weight)"
        + (f", {row.rounding} rounding" if row.rounding and row.rounding != "-" else "")
        + (f", activations {row.activation}" if row.activation else ""),
    ]
    if row.bytes is not None:
        of = f" ({100 * share:.1f}% of the weights)" if share else ""
        parts.append(f"{fmt_bytes(row.bytes)} of payload{of}")
    if row.damage is not None:
        parts.append(f"sensitivity {row.damage:.3g} (damage with this format; lower is better)")
    else:
        parts.append("sensitivity not measured")
    if row.float_reason:
        parts.append(f"kept in floating point: {row.float_reason}")
    return "\n".join(parts)


def layers_svg(rows: Sequence[LayerBar]) -> Markup:
    """``svg#layers``: one ``g.layer`` per row, in the order given (see the module)."""
    label = "the plan per layer: format, size and sensitivity"
    by_bytes = bool(rows) and all(r.bytes is not None for r in rows)
    sizes = [float(r.bytes if by_bytes and r.bytes is not None else r.params) for r in rows]
    total = sum(sizes) or 1.0
    biggest = max(sizes, default=1.0) or 1.0
    damages = [r.damage for r in rows if r.damage is not None and math.isfinite(r.damage)]
    worst = max(damages, default=0.0)
    height = HEAD_H + ROW_H * max(len(rows), 1) + FOOT_H
    out = [svg_open(id_="layers", width=WIDTH, height=height, label=label)]
    what = "payload bytes of the layer's weight" if by_bytes else "parameters of the layer"
    out.append(f'<text class="axis-title" x="{BAR_X}" y="18">bar: {esc(what)}</text>')
    out.append(f'<text class="axis-title" x="{SENS_X}" y="18">damage (lower is better)</text>')
    if not rows:
        at = f'x="{WIDTH / 2:.0f}" y="{HEAD_H + 16}"'
        out.append(f'<text class="empty" {at} text-anchor="middle">no plan yet</text>')
    for i, (row, size) in enumerate(zip(rows, sizes, strict=True)):
        y = HEAD_H + i * ROW_H
        share = size / total if by_bytes else None
        length = max(BAR_W * size / biggest, 1.5)
        colour = format_colour(row.scheme, row.bits)
        classes = "layer" + (" float-island" if row.float_reason else "")
        title = esc(_title(row, share))
        out.append(f"<g {attrs(class_=classes, data_layer=row.name)}><title>{title}</title>")
        if i % 2:
            box = f'x="0" y="{y}" width="{WIDTH}" height="{ROW_H}"'
            out.append(f'<rect class="band" {box} fill="#f7f8fa"/>')
        name = row.name if len(row.name) <= 28 else "\u2026" + row.name[-27:]
        at = f'x="{NAME_W}" y="{y + 17}"'
        out.append(f'<text class="name" {at} text-anchor="end">{esc(name)}</text>')
        out.append(
            f'<rect class="bar" x="{BAR_X}" y="{y + 5}" width="{length:.1f}" height="{ROW_H - 10}" '
            f'fill="{colour}" rx="2"/>'
        )
        amount = fmt_bytes(row.bytes) if by_bytes else f"{row.params:,} params"
        text = f"{row.weight} \u00b7 {_bits(row.bits)} \u00b7 {amount}"
        text += f" ({100 * share:.0f}%)" if share is not None else ""
        if row.float_reason:
            text += " \u00b7 float island"
        out.append(
            f'<text class="fmt" x="{BAR_X + length + 6:.1f}" y="{y + 17}">{esc(text)}</text>'
        )
        if row.damage is not None and math.isfinite(row.damage):
            w = SENS_W * row.damage / worst if worst > 0 else 0.0
            out.append(
                f'<rect class="damage" x="{SENS_X}" y="{y + 8}" width="{max(w, 1.0):.1f}" '
                f'height="{ROW_H - 16}" fill="{_DAMAGE}"/>'
            )
            at = f'x="{WIDTH - 4}" y="{y + 17}"'
            out.append(f'<text {at} text-anchor="end">{row.damage:.2g}</text>')
        else:
            out.append(f'<text class="muted" x="{SENS_X}" y="{y + 17}">\u2013</text>')
        out.append("</g>")
    out += _legend(HEAD_H + ROW_H * max(len(rows), 1) + 14)
    out.append("</svg>")
    return Markup("".join(out))


def _legend(y: int) -> list[str]:
    items = [
        ("int2", _INT[2]),
        ("int4", _INT[4]),
        ("int8", _INT[8]),
        ("cb4 (2 bits)", _CB[2]),
        ("cb16 (4 bits)", _CB[4]),
        ("cb256 (8 bits)", _CB[8]),
        ("fp16", _FLOAT[16]),
        ("fp32", _FLOAT[32]),
    ]
    out, x = [], 20
    for text, colour in items:
        out.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14}" y="{y + 9}">{esc(text)}</text>')
        x += 22 + 7 * len(text)
    return out
