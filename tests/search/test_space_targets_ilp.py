"""Search space keys, targets and the seeding ILP (against brute force)."""

from __future__ import annotations

import itertools
import random

import pytest

from engine.errors import MPQError
from engine.quant import LayerFormat
from search import SearchSpace, Targets
from search._ilp import allocate, budget_ladder
from search._space import choice_key, parse_choice
from search._targets import parse_bytes


def test_choice_keys_round_trip() -> None:
    for fmt in (
        LayerFormat("int4", rounding="gptq", scale="mse"),
        LayerFormat("cb16", activation="a16", scale="mse"),
        LayerFormat("fp16"),
        LayerFormat("int4g64", activation="float", scale="mse"),
    ):
        assert parse_choice(choice_key(fmt)) == fmt
    assert choice_key(LayerFormat("fp16")) == "fp16/-/a8"


def test_space_choices_pins_and_embeddings() -> None:
    space = SearchSpace.parse(
        "int4,cb16,fp16",
        pins=["classifier=int8", "enc.*.q=int6/gptq/a8"],
        roundings=("nearest", "gptq"),
        activations=("a8",),
    )
    assert space.all_choices() == [
        "int4/nearest/a8",
        "int4/gptq/a8",
        "cb16/nearest/a8",
        "cb16/gptq/a8",
        "fp16/-/a8",
    ]
    assert space.choices("classifier") == ["int8/nearest/a8"]
    assert space.choices("enc.3.q") == ["int6/gptq/a8"]
    assert "int4/gptq/a8" not in space.choices("emb", embedding=True)
    plan = space.plan({"a": "int4/gptq/a8", "b": "fp16/-/a8"})
    assert plan.layers["a"] == LayerFormat("int4", rounding="gptq", scale="mse")
    assert SearchSpace.from_json(space.to_json()) == space


def test_grouped_formats_only_where_their_groups_fit() -> None:
    space = SearchSpace.parse("int4,int4g64,int3g128", roundings=("nearest",), activations=("a8",))
    assert space.choices("fc", inputs=384) == [
        "int4/nearest/a8",
        "int4g64/nearest/a8",
        "int3g128/nearest/a8",
    ]
    # 9 inputs (a 3x3 conv on one channel): no group divides them
    assert space.choices("conv", inputs=9) == ["int4/nearest/a8"]
    # 128 inputs: int3g128 would be one group, the per-channel format at more bytes
    assert space.choices("fc", inputs=128) == ["int4/nearest/a8", "int4g64/nearest/a8"]
    grouped = SearchSpace.parse("int4g64", roundings=("nearest",), activations=("a8",))
    with pytest.raises(MPQError, match="'conv' has 9 inputs per output channel") as err:
        grouped.choices("conv", inputs=9)
    assert err.value.code == "invalid_plan"


@pytest.mark.parametrize(
    "bad", [dict(formats="int9"), dict(formats="int4", pins=["x"]), dict(formats=",")]
)
def test_bad_spaces_are_refused_with_a_code(bad: dict[str, object]) -> None:
    with pytest.raises(MPQError) as info:
        SearchSpace.parse(bad["formats"], pins=bad.get("pins", ()))  # type: ignore[arg-type]
    assert info.value.code == "invalid_plan"


def test_bytes_and_targets() -> None:
    assert [parse_bytes(s) for s in ("2048", "8KB", "7.5 kb", "11.4MB", "2MiB")] == [
        2048,
        8000,
        7500,
        11_400_000,
        2_097_152,
    ]
    with pytest.raises(MPQError) as info:
        parse_bytes("8 parsecs")
    assert info.value.code == "invalid_plan"
    t = Targets(max_drop=0.01, min_metric=0.99, max_bytes=9000, min_ratio=4)
    assert t.metric_floor(0.996) == pytest.approx(0.99)  # the stricter floor wins
    assert t.byte_ceiling(40_000) == 9000 and Targets(min_ratio=8).byte_ceiling(40_000) == 5000
    cons = t.constraints(0.995, 9900, baseline=0.996, float_bytes=40_000)
    assert cons["metric"] == pytest.approx(-0.005) and cons["bytes"] == pytest.approx(0.1)
    assert Targets().constraints(0.5, 10, baseline=1.0, float_bytes=100) == {}
    assert Targets(max_drop_rel=0.01).metric_floor(0.9) == pytest.approx(0.891)
    kl = Targets(max_metric=0.01, max_bytes=9000)  # a ceiling for lower-is-better metrics
    assert kl.has_metric_target and kl.metric_ceiling() == 0.01 and kl.metric_floor(0.0) is None
    cons = kl.constraints(0.015, 9000, baseline=0.0, float_bytes=40_000)
    assert cons == {"metric": pytest.approx(0.005), "bytes": 0.0}
    assert kl.constraints(0.004, 10, baseline=0.0, float_bytes=40_000)["metric"] < 0
    for bad in (dict(max_drop=-0.1), dict(max_drop_rel=1.5), dict(max_bytes=0), dict(min_ratio=1)):
        with pytest.raises(MPQError):
            Targets(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(6))
def test_allocation_is_optimal_by_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    layers = rng.randint(2, 5)
    sizes = [[rng.randint(1, 50) for _ in range(rng.randint(2, 4))] for _ in range(layers)]
    damage = [[rng.random() for _ in s] for s in sizes]
    budget = rng.randint(sum(min(s) for s in sizes), sum(max(s) for s in sizes))
    pick = allocate(damage, sizes, budget)
    assert pick is not None
    assert sum(sizes[i][c] for i, c in enumerate(pick)) <= budget
    best = min(
        sum(damage[i][c] for i, c in enumerate(combo))
        for combo in itertools.product(*(range(len(s)) for s in sizes))
        if sum(sizes[i][c] for i, c in enumerate(combo)) <= budget
    )
    assert sum(damage[i][c] for i, c in enumerate(pick)) == pytest.approx(best, abs=1e-9)


def test_allocation_infeasible_and_ladder() -> None:
    assert allocate([[0.0, 1.0]], [[5, 4]], 3) is None
    assert allocate([[0.0, 1.0], [0.0, 2.0]], [[10, 5], [10, 4]], 9) == [1, 1]
    ladder = budget_ladder(1000, 100_000, steps=8, ceiling=None)
    assert ladder[0] == 1000 and ladder[-1] == 100_000 and ladder == sorted(set(ladder))
    with_ceiling = budget_ladder(1000, 100_000, steps=8, ceiling=5000)
    assert 5000 in with_ceiling and sum(b <= 5000 for b in with_ceiling) >= 8
