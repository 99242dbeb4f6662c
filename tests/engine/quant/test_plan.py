"""QuantPlan / LayerFormat: validation, derived properties and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from engine.errors import InvalidPlanError
from engine.quant import LayerFormat, QuantPlan


@pytest.mark.parametrize(
    ("weight", "bits", "group", "k"),
    [
        ("int2", 2, None, None),
        ("int8", 8, None, None),
        ("int16", 16, None, None),
        ("int4g64", 4, 64, None),
        ("cb2", 1, None, 2),
        ("cb16", 4, None, 16),
        ("cb256", 8, None, 256),
        ("fp16", 16, None, None),
        ("fp32", 32, None, None),
    ],
)
def test_formats_parse(weight: str, bits: int, group: int | None, k: int | None) -> None:
    fmt = LayerFormat(weight=weight)
    assert (fmt.bits, fmt.group_size, fmt.codebook_size) == (bits, group, k)
    assert fmt.is_float == weight.startswith("fp")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight": "int1"}, "2..8 or 16"),
        ({"weight": "int9"}, "2..8 or 16"),
        ({"weight": "int4g48"}, "32, 64 or 128"),
        ({"weight": "cb3"}, "2, 4, ..., 256"),
        ({"weight": "cb512"}, "2, 4, ..., 256"),
        ({"weight": "float8"}, "unknown weight format"),
        ({"activation": "a7"}, "activation"),
        ({"rounding": "stochastic"}, "rounding"),
        ({"scale": "percentile"}, "scale"),
        ({"outliers": -1}, "outliers"),
        ({"weight": "fp16", "rounding": "gptq"}, "no rounding"),
    ],
)
def test_bad_formats_are_refused_with_a_fix(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidPlanError, match=match) as info:
        LayerFormat(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == "invalid_plan"


def test_json_round_trip_and_canonical_text() -> None:
    plan = QuantPlan(
        layers={
            "features.0": LayerFormat("int4", "a8", "gptq", "mse", 2),
            "classifier": LayerFormat("cb16", activation="float"),
        },
        calibration="percentile",
    )
    text = plan.dumps()
    back = QuantPlan.from_json(json.loads(text))
    assert back == plan and back.dumps() == text
    assert json.loads(text)["layers"]["features.0"] == {
        "weight": "int4",
        "activation": "a8",
        "rounding": "gptq",
        "scale": "mse",
        "outliers": 2,
        "bias_correction": False,
    }


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ([], "JSON object"),
        ({"layers": {"a": "int4"}}, "expected an object"),
        ({"layers": {"a": {"bits": 4}}}, "unknown fields"),
        ({"layers": {}, "extra": 1}, "unknown plan fields"),
        ({"layers": {}, "version": 2}, "version"),
        ({"layers": {}, "calibration": "kl"}, "calibration"),
    ],
)
def test_bad_plan_documents_are_refused(doc: object, match: str) -> None:
    with pytest.raises(InvalidPlanError, match=match):
        QuantPlan.from_json(doc)


def test_plan_must_cover_exactly_the_model_layers() -> None:
    plan = QuantPlan.uniform(["a", "b"], LayerFormat("int8"))
    plan.check_layers(["b", "a"])
    with pytest.raises(InvalidPlanError, match=r"missing layers \['c'\], unknown layers \[\]"):
        plan.check_layers(["a", "b", "c"])
