"""The search on the real digits CNN: meets the target with true numbers, same seed same
result, and two processes share one study's budget exactly."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.data import Split, accuracy, evaluate, holdout_indices, wilson_interval
from engine.io import load_artifact
from engine.ir import to_graph_module
from search import (
    Evaluator,
    SearchConfig,
    SearchSpace,
    Targets,
    best_so_far,
    create_search,
    finalize,
    front,
    open_evaluator,
    run_trials,
    trial_records,
)
from search._study import load_study, open_storage
from tests.conftest import ROOT

SPACE = SearchSpace(formats=("int2", "int3", "int4", "int8", "cb4", "cb16", "fp16"))


CACHE: list[Path] = []  # one sensitivity cache for the module: measured once


def _config(digits, tmp: Path, **kw: object) -> SearchConfig:  # type: ignore[no-untyped-def]
    if not CACHE:
        CACHE.append(tmp / "cache")
    base: dict[str, object] = dict(
        model=str(digits.pt2),
        data=str(digits.npz),
        metric="accuracy",
        targets=Targets(max_drop=0.01),
        space=SPACE,
        trials=24,
        seed=0,
        cache_dir=str(CACHE[0]),
    )
    base.update(kw)
    return SearchConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def evaluator(digits, tmp_path_factory):  # type: ignore[no-untyped-def]
    cfg = _config(digits, tmp_path_factory.mktemp("ev"))
    return open_evaluator(cfg, trust_uploads=False)


def test_digits_search_meets_the_target_with_true_numbers(
    digits, evaluator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(digits, tmp_path)
    search = create_search(cfg, evaluator)
    run_trials(search, evaluator)
    result = finalize(search, evaluator, tmp_path / "out")
    assert result["met_targets"] and result["chosen"] is not None
    for name in ("result.json", "model.mpq", "model.onnx", "pareto.png", "layers.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    chosen = result["chosen"]
    assert chosen["onnx"]["file"] == "model.onnx"
    assert chosen["onnx"]["file_bytes"] == (tmp_path / "out" / "model.onnx").stat().st_size
    floor = result["targets"]["metric_floor"]
    assert chosen["metric"] >= floor and floor == pytest.approx(search.baseline - 0.01)
    # the numbers are the file's: its tensor bytes and what evaluating it gives
    art = load_artifact(tmp_path / "out" / "model.mpq")
    assert chosen["payload_bytes"] == art.payload_bytes
    trial = next(t for t in result["trials"] if t["number"] == chosen["trial"])
    assert trial["bytes"] == art.payload_bytes
    held = chosen["heldout"]["metric"]
    data = evaluator.data  # the search split: what trials and the choice saw
    got = accuracy(evaluate(art.module(), data, "evaluation"), data.evaluation.labels)
    assert got == chosen["metric"] == trial["metric"]
    assert result["holdout"]["search_samples"] == data.evaluation.num_samples == 405
    assert result["holdout"]["heldout_samples"] == chosen["heldout"]["samples"] == 135
    assert chosen["evaluation_metric"] == pytest.approx((405 * got + 135 * held) / 540)
    assert chosen["payload_bytes"] <= 7_500  # the goal: <= 7.5 KB at <= 1 pt drop
    assert chosen["payload_bytes"] == min(
        t["bytes"] for t in result["trials"] if t["feasible"]
    )  # the smallest plan meeting the target
    best = best_so_far(search)
    assert best is not None and best.number == chosen["trial"]
    # one process: exactly the budget, no trial closed unrun
    assert len(search.study.get_trials()) == cfg.trials == len(result["trials"])
    # the uniform baselines ran first, as trials, then the ILP seeds
    records = trial_records(search)
    sources = [r.source for r in records]
    assert sources[:2] == ["uniform:int8/gptq/a8", "uniform:int4/gptq/a8"]
    assert all(s.startswith("ilp") for s in sources[2:5])
    assert [(u["plan"], u["trial"]) for u in result["uniform"]] == [
        ("int8/gptq/a8", records[0].number),
        ("int4/gptq/a8", records[1].number),
    ]
    assert set(records[0].choices.values()) == {"int8/gptq/a8"}
    # every front trial is undominated; no uniform baseline beats the chosen plan
    assert {r.number for r in front(records, metric="accuracy")} == set(result["front"])
    for u in result["uniform"]:
        assert not (u["metric"] >= chosen["metric"] and u["bytes"] < chosen["payload_bytes"])
    assert result["sensitivity_method"] == "full"  # auto, on a model this small
    # integer-only readiness, per layer: every layer of this plan runs on integers
    assert chosen["integer_only"] == "full"
    assert chosen["float_layers"] == {} and chosen["integer_ready_layers"] == len(
        records[0].choices
    )


def test_same_seed_same_result(digits, evaluator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def run() -> list[tuple[object, ...]]:
        search = create_search(_config(digits, tmp_path, trials=14, seed=3), evaluator)
        run_trials(search, evaluator)
        return [(r.choices, r.metric, r.bytes, r.state) for r in trial_records(search)]

    first, second = run(), run()
    assert len(first) == 14 and first == second
    assert sum(1 for r in first if r[3] != "complete" or r[1] is not None) == 14


def test_a_target_nobody_meets_returns_the_closest_miss(digits, evaluator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = _config(digits, tmp_path, trials=10, targets=Targets(max_drop=0.0, max_bytes=1900))
    search = create_search(cfg, evaluator)
    run_trials(search, evaluator)
    result = finalize(search, evaluator, tmp_path / "out")
    assert not result["met_targets"] and not result["met_on_search"]
    assert "no plan met the targets" in result["message"]
    assert (tmp_path / "out" / "model.mpq").is_file() == (result["chosen"] is not None)
    # the closest miss is on the front: no trial (a uniform baseline included) beats it
    chosen = result["chosen"]
    trial = next(t for t in result["trials"] if t["number"] == chosen["trial"])
    assert chosen["trial"] in result["front"]
    assert not any(
        t["metric"] is not None
        and t["state"] == "complete"
        and t["metric"] >= trial["metric"]
        and t["bytes"] < trial["bytes"]
        for t in result["trials"]
    )


def test_the_held_out_split_judges_the_chosen_plan(digits, evaluator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Seed 1's split leaves the float model 0.9975 on the search split and 0.9852 on the
    # held-out one: a 0.99 floor is met while searching and missed on held-out data.
    ev = Evaluator(evaluator.ir, evaluator.whole, "accuracy", holdout=0.25, seed=1)
    assert ev.baseline > 0.99 > ev.heldout_baseline.metric  # type: ignore[union-attr]
    cfg = _config(digits, tmp_path, trials=6, seed=1, targets=Targets(min_metric=0.99))
    search = create_search(cfg, ev)
    run_trials(search, ev)
    result = finalize(search, ev, tmp_path / "out")
    chosen, held = result["chosen"], result["chosen"]["heldout"]
    assert result["met_on_search"] and chosen["metric"] >= 0.99
    assert held["metric"] < 0.99 and not result["met_targets"]
    assert result["targets"]["heldout_metric_floor"] == 0.99
    assert "misses the targets" in result["message"]
    # the figure is the file's on the held-out samples, with its Wilson interval
    labels = torch.cat([b.labels for b in ev.heldout_batches])  # type: ignore[misc]
    module = load_artifact(tmp_path / "out" / "model.mpq").module()
    with torch.no_grad():
        out = torch.cat([b.unpad(module(*b.tensors)) for b in ev.heldout_batches])
    hits = int((out.argmax(-1) == labels).sum())
    assert held["metric"] == accuracy(out, labels) == hits / 135 and held["samples"] == 135
    assert held["ci"] == list(wilson_interval(hits, 135)) and held["level"] == 0.95
    assert 0.9 < held["integer_metric"] <= 1.0
    assert result["baseline"]["heldout"]["metric"] == ev.heldout_baseline.metric  # type: ignore[union-attr]
    assert result["holdout"] == {
        "fraction": 0.25,
        "search_samples": 405,
        "heldout_samples": 135,
        "stratified_by": "labels",
        "seed": 1,
        "note": None,
    }


def test_agreement_without_labels_stratifies_by_the_float_top1(evaluator) -> None:  # type: ignore[no-untyped-def]
    whole = evaluator.whole
    unlabelled = replace(whole, evaluation=Split(whole.evaluation.inputs, None))
    ev = Evaluator(evaluator.ir, unlabelled, "agreement", holdout=0.25, seed=0)
    assert ev.stratified_by == "float top-1" and ev.baseline == 1.0
    top1 = evaluate(to_graph_module(evaluator.ir), unlabelled, "evaluation").argmax(-1)
    cut = holdout_indices(540, 0.25, seed=0, strata=top1)
    held = torch.cat([b.tensors[0][: b.n_valid] for b in ev.heldout_batches])
    assert torch.equal(held, whole.evaluation.tensors()[0][cut.heldout])
    score = ev.heldout_baseline
    assert score is not None and score.metric == 1.0 and score.samples == 135
    assert score.ci == wilson_interval(135, 135)


def test_too_few_samples_turn_the_held_out_split_off(evaluator) -> None:  # type: ignore[no-untyped-def]
    whole = evaluator.whole
    tiny = replace(whole, evaluation=whole.evaluation.select(torch.arange(5)))
    ev = Evaluator(evaluator.ir, tiny, "accuracy", holdout=0.25, seed=0)
    assert ev.heldout_batches == [] and ev.heldout_baseline is None
    assert ev.heldout_note is not None and ev.heldout_note in ev.notes
    assert ev._rows(len(ev.batches)) == 5  # every sample is searched on
    assert math.isnan(ev.score_module(to_graph_module(ev.ir), split="heldout"))


_BARRIER_WORKER = """
import sys, time
from pathlib import Path
import torch
from search import join_search, open_evaluator, run_trials

url, worker, ready, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
torch.set_num_threads(1)
search = join_search(url, "shared", worker=worker)
ev = open_evaluator(search.config, trust_uploads=True)  # our own export
ready.touch()
while not go.exists():
    time.sleep(0.01)
run_trials(search, ev, worker=worker)
"""


def test_two_processes_share_the_budget_exactly(digits, evaluator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two processes draw trials from one study: every trial number below the budget runs
    once, in one of them. Both start drawing at once (a barrier after their imports and
    evaluator setup, which take seconds): a process up first could otherwise run them all
    -- as `mpq search-worker` processes once did -- and the sharing would go untested."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    budget = 24
    cfg = _config(digits, tmp_path, trials=budget)
    create_search(cfg, evaluator, storage_url=url, name="shared")
    ready = [tmp_path / f"ready-{w}" for w in (1, 2)]
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _BARRIER_WORKER, url, str(w), str(ready[w - 1]), str(go)],
            cwd=ROOT,
        )
        for w in (1, 2)
    ]
    deadline = time.monotonic() + 300
    while not all(r.exists() for r in ready):
        assert all(p.poll() is None for p in workers), "a worker exited before the barrier"
        assert time.monotonic() < deadline, "the workers did not get ready"
        time.sleep(0.05)
    go.touch()
    assert [p.wait(timeout=600) for p in workers] == [0, 0]
    storage = open_storage(url)
    assert storage is not None
    trials = load_study(storage, "shared").study.get_trials()
    ran = [t for t in trials if not t.user_attrs.get("over_budget")]
    # every trial number below the budget ran exactly once, to the end, and nothing else ran
    assert sorted(t.number for t in ran) == list(range(budget))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in ran)
    assert {t.user_attrs["mpq"]["worker"] for t in ran} == {1, 2}
    seeds = [
        t.user_attrs["source"] for t in ran if str(t.user_attrs.get("source")).startswith("ilp")
    ]
    assert len(seeds) == len(set(seeds)) >= 3  # each enqueued seed taken by one worker only
    extra = [t for t in trials if t.user_attrs.get("over_budget")]
    assert len(extra) <= 2 and all(t.state.name == "FAIL" for t in extra)
    torch.testing.assert_close(len(trials), budget + len(extra))
