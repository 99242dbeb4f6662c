"""The dashboard's SVG charts, built from plain values and read back with ``xml.etree``.

The front chart has a circle per trial with a metric (hollow when pruned or
infeasible), one step line, a marker per uniform baseline, one chosen marker, each
with a tooltip; the metric floor and byte ceiling when set; a log x axis only when the
bytes span more than ten times; "no trials yet" when there is nothing. The plan chart
has a row per layer, bars as long as the layer's bytes (or its parameters, saying so).
Every name (a layer called ``<a&"b>``) is escaped: the SVG still parses.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from service.api.pages.charts import Scale, byte_ticks, pick_scale
from service.api.pages.charts_compare import Series, fronts_svg
from service.api.pages.charts_front import (
    ChosenPoint,
    FrontChart,
    TrialPoint,
    UniformPoint,
    front_svg,
    trial_points,
)
from service.api.pages.charts_plan import LayerBar, layers_svg
from service.api.pages.compare import plan_rows
from service.api.pages.job_view import layer_bars, split_choice

NS = "{http://www.w3.org/2000/svg}"
EVIL = '<a&"b>'


def _svg(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))
    assert root.tag == f"{NS}svg"
    return root


def _with_class(root: ET.Element, cls: str, tag: str | None = None) -> list[ET.Element]:
    return [
        e
        for e in root.iter()
        if cls in (e.get("class") or "").split() and (tag is None or e.tag == f"{NS}{tag}")
    ]


def _title(e: ET.Element) -> str:
    t = e.find(f"{NS}title")
    assert t is not None and t.text, ET.tostring(e)
    return t.text


def _trials(n: int, *, spread: float = 3.0) -> list[TrialPoint]:
    return [
        TrialPoint(
            number=i,
            metric=0.9 + 0.01 * i,
            bytes=int(1000 * spread**i),
            state="pruned" if i == 1 else "complete",
            feasible=i != 2,
            plan={EVIL: f"int{2 + i}/gptq/a8"},
            on_front=i in (0, 3),
        )
        for i in range(n)
    ]


def _chart(**over: object) -> FrontChart:
    base: dict[str, object] = {
        "metric": "accuracy",
        "higher_is_better": True,
        "trials": _trials(4),
        "uniform": [UniformPoint("int8/gptq/a8", 0.93, 5000, 0)],
        "chosen": ChosenPoint(3, 0.93, 27000),
        "floor": 0.91,
        "ceiling": 30000,
        "baseline": 0.935,
    }
    return FrontChart(**(base | over))  # type: ignore[arg-type]


def test_front_has_a_circle_per_trial_one_front_line_uniforms_and_one_chosen() -> None:
    root = _svg(front_svg(_chart()))
    assert root.get("id") == "front" and "chart" in (root.get("class") or "")
    circles = _with_class(root, "trial", "circle")
    assert len(circles) == 4
    assert {c.get("data-row") for c in circles} == {f"trial-{i}" for i in range(4)}
    assert len(_with_class(root, "front-line", "path")) == 1
    assert len(_with_class(root, "uniform")) == 1
    (chosen,) = _with_class(root, "chosen")
    assert chosen.get("data-row") == "trial-3"
    assert "trial 3" in _title(chosen)
    for mark in [*circles, chosen, *_with_class(root, "uniform")]:
        _title(mark)


def test_pruned_and_infeasible_trials_are_hollow() -> None:
    root = _svg(front_svg(_chart()))
    hollow = {c.get("data-row") for c in _with_class(root, "hollow", "circle")}
    assert hollow == {"trial-1", "trial-2"}
    for c in _with_class(root, "hollow", "circle"):
        assert c.get("fill") == "#fff"


def test_titles_carry_the_plan_and_names_are_escaped() -> None:
    markup = str(front_svg(_chart()))
    assert EVIL not in markup
    root = _svg(markup)
    (first,) = [c for c in _with_class(root, "trial") if c.get("data-row") == "trial-0"]
    title = _title(first)
    assert "trial 0" in title and "accuracy 0.9" in title
    assert f"{EVIL}: int2/gptq/a8" in title


def test_targets_are_dashed_lines_when_set_and_absent_otherwise() -> None:
    root = _svg(front_svg(_chart()))
    (floor,) = _with_class(root, "floor", "line")
    (ceiling,) = _with_class(root, "ceiling", "line")
    assert floor.get("stroke-dasharray") and ceiling.get("stroke-dasharray")
    assert "0.91" in _title(floor)
    bare = _svg(front_svg(_chart(floor=None, ceiling=None)))
    assert not _with_class(bare, "floor") and not _with_class(bare, "ceiling")


def test_no_trials_gives_a_chart_that_says_so() -> None:
    root = _svg(front_svg(FrontChart(metric="accuracy", higher_is_better=True)))
    assert root.get("id") == "front"
    assert not _with_class(root, "trial")
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "no trials yet" in texts


def test_the_x_axis_is_log_only_when_bytes_span_more_than_ten_times() -> None:
    wide = _svg(front_svg(_chart()))  # 1,000 to 30,000 bytes
    narrow = _svg(
        front_svg(_chart(trials=_trials(4, spread=1.5), uniform=[], chosen=None, ceiling=None))
    )

    def axis(root: ET.Element) -> str:
        return " ".join(t.text or "" for t in _with_class(root, "axis-title", "text"))

    assert "log scale" in axis(wide)
    assert "linear scale" in axis(narrow)
    assert pick_scale([100, 1001], 0, 1, log_ok=True).log
    assert not pick_scale([100, 999], 0, 1, log_ok=True).log
    assert not pick_scale([100, 10_000], 0, 1, log_ok=False).log


def test_log_scale_maps_decades_evenly_and_ticks_read_as_bytes() -> None:
    s = Scale(10, 1000, 0, 200, log=True)
    assert s(10) == 0 and s(100) == 100 and s(1000) == 200
    labels = [label for _, label in byte_ticks(Scale(1000, 70_000, 0, 1, log=True))]
    assert labels[0] == "1 KiB" and "64 KiB" in labels
    assert [v for v, _ in byte_ticks(Scale(0, 5000, 0, 1))][:3] == [0.0, 1024.0, 2048.0]


def test_far_off_trials_sit_on_the_edge_with_their_true_value() -> None:
    trials = [*_trials(4), TrialPoint(9, 0.1, 3000, state="pruned", feasible=False)]
    root = _svg(front_svg(_chart(trials=trials)))
    (far,) = _with_class(root, "clipped", "circle")
    assert far.get("data-row") == "trial-9" and "accuracy 0.1," in _title(far)


def test_trial_points_read_api_records() -> None:
    records = [
        {"number": 0, "state": "complete", "metric": 0.9, "bytes": 10, "feasible": True,
         "source": "uniform:int8/gptq/a8", "plan": {"l": "int8/gptq/a8"}},
        {"number": 1, "state": "fail", "metric": None, "bytes": 9, "feasible": False, "plan": {}},
    ]  # fmt: skip
    (point,) = trial_points(records, [0])
    assert point.on_front and point.plan == {"l": "int8/gptq/a8"} and point.solid


def test_layers_chart_has_a_row_per_layer_with_bars_by_bytes() -> None:
    rows = [
        LayerBar(EVIL, "conv2d", 100, "int4", "affine", 4.0, bytes=60, damage=0.01),
        LayerBar("fc", "linear", 300, "cb16", "codebook", 4.0, bytes=180, damage=None),
        LayerBar("head", "linear", 10, "fp32", "float", 32.0, bytes=40, float_reason="too small"),
    ]
    markup = str(layers_svg(rows))
    assert EVIL not in markup
    root = _svg(markup)
    assert root.get("id") == "layers"
    groups = _with_class(root, "layer", "g")
    assert [g.get("data-layer") for g in groups] == [EVIL, "fc", "head"]
    assert "too small" in _title(groups[2]) and "float-island" in (groups[2].get("class") or "")
    widths = [float(g.find(f"{NS}rect[@class='bar']").get("width") or 0) for g in groups]  # type: ignore[union-attr]
    assert widths[1] == max(widths) and abs(widths[0] / widths[1] - 60 / 180) < 1e-2
    assert "payload bytes" in markup
    by_params = str(layers_svg([LayerBar("a", "linear", 5, "int8", "affine", 8.0)]))
    assert "parameters of the layer" in by_params


def test_layer_bars_follow_the_inventory_and_compute_bytes() -> None:
    inventory = [
        {"name": "b", "kind": "linear", "params": 330, "weight_shape": [10, 32]},
        {"name": "a", "kind": "conv2d", "params": 144, "weight_shape": [16, 1, 3, 3]},
    ]
    bars = layer_bars(
        inventory,
        {"a": "int5/gptq/a8", "b": "cb4/gptq/a8"},
        sensitivity={"a": {"int5/gptq/a8": 1e-4}},
        float_layers={},
    )
    assert [b.name for b in bars] == ["b", "a"]
    assert bars[1].weight == "int5" and bars[1].bits == 5 and bars[1].damage == 1e-4
    assert bars[0].scheme == "codebook" and bars[0].bits == 2 and bars[0].damage is None
    assert bars[1].bytes is not None and bars[1].bytes >= 144 * 5 // 8
    missing = layer_bars(inventory, {"a": "int8/nearest/a8"})
    assert missing[0].weight == "fp32"
    assert split_choice("fp16") == ("fp16", "-", "-")


def test_fronts_overlay_a_series_per_job() -> None:
    series = [
        Series("#1 digits v1", _trials(3)[:1] + _trials(4)[3:], ChosenPoint(3, 0.93, 27000)),
        Series(f"#2 {EVIL} v2", _trials(2)[:1]),
    ]
    root = _svg(fronts_svg(series, metric="accuracy", higher_is_better=True))
    assert root.get("id") == "fronts"
    groups = _with_class(root, "series", "g")
    assert [g.get("data-series") for g in groups] == ["#1 digits v1", f"#2 {EVIL} v2"]
    assert len(_with_class(groups[0], "chosen")) == 1 and not _with_class(groups[1], "chosen")


def test_plan_rows_mark_layers_that_differ() -> None:
    rows = plan_rows(
        [["x", "y"], ["x", "y"]],
        [{"x": "int4/gptq/a8", "y": "int8/gptq/a8"}, {"x": "int4/gptq/a8", "y": "cb16/gptq/a8"}],
    )
    assert [(r.layer, r.differs) for r in rows] == [("x", False), ("y", True)]
    empty = plan_rows([["x"], ["x"]], [{"x": "int4/gptq/a8"}, {}])
    assert empty[0].cells == ("int4/gptq/a8", "\u2013") and empty[0].differs
