"""Warm start on the real digits CNN: a study seeded by an earlier one's chosen plan and
front, mapped by layer name, with sensitivity reused for layers whose weights are unchanged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.io.importers import import_model
from engine.ir import save_ir
from search import (
    SearchConfig,
    SearchSpace,
    Targets,
    WarmStart,
    create_search,
    load_warm_start,
    open_evaluator,
    run_trials,
    trial_records,
)
from search._layer_cache import layer_hashes, weight_hash
from search._warm import map_plans

SPACE = SearchSpace(formats=("int2", "int3", "int4", "int8", "cb16"))
HEAD = "classifier.weight"  # the digits CNN's last layer: nudged in "version 2"


def _config(model: Path, digits, cache: Path, **kw: object) -> SearchConfig:  # type: ignore[no-untyped-def]
    base: dict[str, object] = dict(
        model=str(model),
        data=str(digits.npz),
        metric="accuracy",
        targets=Targets(max_drop=0.01),
        space=SPACE,
        trials=12,
        seed=0,
        cache_dir=str(cache),
    )
    return SearchConfig(**(base | kw))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def versions(digits, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The digits IR as trained, and a copy whose last layer's weights were nudged."""
    out = tmp_path_factory.mktemp("versions")
    ir = import_model(digits.pt2).ir
    save_ir(ir, out / "v1.safetensors")
    gen = torch.Generator().manual_seed(1)
    w = ir.tensors[HEAD]
    nudged = w + 0.01 * w.abs().mean() * torch.randn(w.shape, generator=gen, dtype=w.dtype)
    save_ir(replace(ir, tensors={**ir.tensors, HEAD: nudged}), out / "v2.safetensors")
    return out / "v1.safetensors", out / "v2.safetensors"


def test_weight_hash_sees_dtype_shape_and_every_bit() -> None:
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert weight_hash(w) == weight_hash(w.clone())
    assert weight_hash(w) != weight_hash(w.reshape(4, 3))
    assert weight_hash(w) != weight_hash(w.double())
    bumped = w.clone()
    bumped[2, 3] = torch.nextafter(bumped[2, 3], torch.tensor(100.0))
    assert weight_hash(w) != weight_hash(bumped)


def _cold_then_warm(versions, digits, tmp_path: Path, second: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    cache = tmp_path / "cache"
    cfg = _config(versions[0], digits, cache)
    ev = open_evaluator(cfg)
    cold = create_search(cfg, ev, storage_url=url, name="cold")
    run_trials(cold, ev)
    records = trial_records(cold)
    feasible = [r for r in records if r.feasible]
    chosen = min(feasible, key=lambda r: r.bytes)
    warm = load_warm_start(
        url,
        "cold",
        from_job=7,
        chosen_trial=chosen.number,
        front=[r.number for r in feasible],
        chosen_bytes=chosen.bytes,
    )
    cfg2 = _config(second, digits, cache)
    ev2 = open_evaluator(cfg2)
    search = create_search(cfg2, ev2, storage_url=url, name="warm", warm=warm)
    return chosen, ev2, search


def test_warm_study_starts_from_the_chosen_plan_and_reuses_all_sensitivity(
    versions, digits, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    chosen, ev, search = _cold_then_warm(versions, digits, tmp_path, versions[0])
    info = search.study.user_attrs["warm_start"]
    assert info["from_job"] == 7
    assert info["layers_reused"] == len(ev.layers) and info["layers_measured"] == 0
    assert 1 <= info["seeded_plans"] <= search.config.trials // 2
    waiting = search.study.get_trials(deepcopy=False)
    assert waiting[0].system_attrs["fixed_params"] == chosen.choices
    assert waiting[0].user_attrs["source"] == "warm:7"
    assert len(waiting) <= search.config.trials
    run_trials(search, ev, deadline=None)
    first = trial_records(search)[0]
    assert first.choices == chosen.choices and first.feasible


def test_a_changed_layer_is_measured_again_and_the_others_reused(
    versions, digits, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    chosen, ev, search = _cold_then_warm(versions, digits, tmp_path, versions[1])
    info = search.study.user_attrs["warm_start"]
    assert info["layers_measured"] == 1
    assert info["layers_reused"] == len(ev.layers) - 1
    # the shapes are unchanged, so every layer keeps its earlier choice
    first = search.study.get_trials(deepcopy=False)[0]
    assert first.system_attrs["fixed_params"] == chosen.choices


def test_layers_new_or_reshaped_or_outside_the_space_take_the_ilp_choice(
    versions, digits, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ev = open_evaluator(_config(versions[0], digits, tmp_path))
    names = [x.name for x in ev.layers]
    old = dict.fromkeys(names, "int4/nearest/a8")
    old[names[1]] = "int6/nearest/a8"  # not in the new space
    facts = {n: {"shape": list(ev.shapes[n]), "hash": None} for n in names}
    facts[names[2]] = {"shape": [1, 1], "hash": None}  # reshaped
    del facts[names[3]]  # new in this version
    fallback = dict.fromkeys(names, "int8/nearest/a8")
    warm = WarmStart(3, (old, old), facts)
    (plan,) = map_plans(warm, ev, SPACE, fallback, limit=4)
    assert plan[names[0]] == "int4/nearest/a8"
    assert plan[names[1]] == plan[names[2]] == plan[names[3]] == "int8/nearest/a8"
    assert set(layer_hashes(ev)) == set(names)
