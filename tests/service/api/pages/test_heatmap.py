"""The sensitivity heatmap's SVG: rows by columns, exact values, escaping, empty cells."""

from __future__ import annotations

import pytest

from service.api.pages.heatmap import (
    COLOURS,
    damage_colour,
    heatmap_columns,
    sensitivity_heatmap,
)
from tests.service.api.pages.conftest import Element, parse_html

DAMAGE = {
    "conv1": {"int2/gptq/a8": 0.5, "int4/gptq/a8": 0.001, "int8/nearest/a8": 1e-6},
    "fc": {"int2/gptq/a8": 0.02, "int8/nearest/a8": 0.0},
}


def _svg(
    layers: list[str], damage: dict[str, dict[str, float]], *, row_ids: dict[str, str] | None = None
) -> Element:
    return parse_html(str(sensitivity_heatmap(layers, damage, row_ids=row_ids))).one("svg")


def test_one_row_per_layer_one_cell_per_format() -> None:
    svg = _svg(["conv1", "fc"], DAMAGE)
    assert svg.attrs["id"] == "sensitivity"
    rows = svg.find_all("g", cls="row")
    assert [r.attrs["data-layer"] for r in rows] == ["conv1", "fc"]
    for row in rows:
        assert len(row.find_all("rect", cls="cell")) == 3
    labels = [t.find_all("title")[0].words() for t in svg.find_all("text", cls="col")]
    assert labels == ["int2/gptq/a8", "int4/gptq/a8", "int8/nearest/a8"]


def test_columns_keep_the_order_first_seen() -> None:
    assert heatmap_columns({"a": {"x": 1.0, "y": 2.0}, "b": {"z": 1.0, "x": 3.0}}) == [
        "x",
        "y",
        "z",
    ]


def test_each_cell_title_carries_the_exact_value() -> None:
    svg = _svg(["conv1", "fc"], DAMAGE)
    conv1 = svg.one("g", cls="row", data_layer="conv1")
    titles = [c.one("title").words() for c in conv1.find_all("rect", cls="cell")]
    assert titles == [
        "conv1 · int2/gptq/a8: damage 0.5",
        "conv1 · int4/gptq/a8: damage 0.001",
        "conv1 · int8/nearest/a8: damage 1e-06",
    ]
    values = [float(c.attrs["data-value"]) for c in conv1.find_all("rect", cls="cell")]
    assert values == [0.5, 0.001, 1e-6]


def test_missing_cells_are_drawn_empty() -> None:
    svg = _svg(["conv1", "fc"], DAMAGE)
    fc = svg.one("g", cls="row", data_layer="fc")
    missing = fc.find_all("rect", cls="missing")
    assert len(missing) == 1
    assert missing[0].attrs["fill"] == "none"
    assert missing[0].one("title").words() == "fc · int4/gptq/a8: not measured"


def test_inventory_layers_come_first_and_unmeasured_layers_are_empty_rows() -> None:
    svg = _svg(["fc", "bn_only", "conv1"], DAMAGE)
    rows = svg.find_all("g", cls="row")
    assert [r.attrs["data-layer"] for r in rows] == ["fc", "bn_only", "conv1"]
    assert len(rows[1].find_all("rect", cls="missing")) == 3


def test_names_are_escaped() -> None:
    layer = '<script>alert(1)</script>"&'
    fmt = "int4/<b>/a8"
    markup = str(sensitivity_heatmap([layer], {layer: {fmt: 0.1}}))
    assert "<script>" not in markup and "<b>" not in markup
    assert "&lt;script&gt;" in markup and "&#34;&amp;" in markup
    svg = parse_html(markup).one("svg")
    assert svg.one("g", cls="row").attrs["data-layer"] == layer
    assert svg.one("rect", cls="cell").one("title").words() == f"{layer} · {fmt}: damage 0.1"


def test_colours_follow_a_log_scale() -> None:
    lo, hi = 1e-6, 1.0
    assert damage_colour(1e-6, lo, hi) == COLOURS[0]
    assert damage_colour(0.0, lo, hi) == COLOURS[0]
    assert damage_colour(-0.3, lo, hi) == COLOURS[0]
    assert damage_colour(1.0, lo, hi) == COLOURS[-1]
    assert damage_colour(5.0, lo, hi) == COLOURS[-1]
    # 1e-3 is half way on the log scale: the middle of the ramp, not its first colour
    assert damage_colour(1e-3, lo, hi) == COLOURS[len(COLOURS) // 2]
    ramp = [COLOURS.index(damage_colour(10.0**-k, lo, hi)) for k in range(6, -1, -1)]
    assert ramp == sorted(ramp) and ramp[0] == 0 and ramp[-1] == len(COLOURS) - 1


def test_cells_are_coloured_by_damage_and_the_legend_gives_the_range() -> None:
    svg = _svg(["conv1", "fc"], DAMAGE)
    conv1 = svg.one("g", cls="row", data_layer="conv1")
    fills = [c.attrs["fill"] for c in conv1.find_all("rect", cls="cell")]
    assert fills[0] == COLOURS[-1]  # the largest damage
    assert fills[2] == COLOURS[0]  # the smallest positive one
    legend = svg.one("g", cls="scale")
    assert len(legend.find_all("rect")) == len(COLOURS)
    assert "1e-06" in legend.words() and "0.5" in legend.words() and "log scale" in legend.words()


def test_a_table_without_positive_damage_still_draws() -> None:
    svg = _svg(["a"], {"a": {"int8/nearest/a8": 0.0}})
    assert svg.one("rect", cls="cell").attrs["fill"] == COLOURS[0]
    assert "no positive damage" in svg.one("g", cls="scale").words()


@pytest.mark.parametrize("n_layers", [1, 7])
def test_rows_link_to_table_rows(n_layers: int) -> None:
    layers = [f"l{i}" for i in range(n_layers)]
    damage = {name: {"int4/gptq/a8": 0.1 * (i + 1)} for i, name in enumerate(layers)}
    ids = {name: f"layer-{i}" for i, name in enumerate(layers)}
    svg = _svg(layers, damage, row_ids=ids)
    cells = svg.find_all("rect", cls="cell")
    assert [c.attrs["data-row"] for c in cells] == [f"layer-{i}" for i in range(n_layers)]
