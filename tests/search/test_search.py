"""The search on the real digits CNN: meets the target with true numbers, same seed same
result, and two processes share one study's budget exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.data import accuracy, evaluate
from engine.io import load_artifact
from search import (
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
    data = evaluator.data
    got = accuracy(evaluate(art.module(), data, "evaluation"), data.evaluation.labels)
    assert got == chosen["metric"] == trial["metric"]
    assert chosen["payload_bytes"] <= 7_500  # the goal: <= 7.5 KB at <= 1 pt drop
    assert chosen["payload_bytes"] == min(
        t["bytes"] for t in result["trials"] if t["feasible"]
    )  # the smallest plan meeting the target
    best = best_so_far(search)
    assert best is not None and best.number == chosen["trial"]
    # one process: exactly the budget, no trial closed unrun
    assert len(search.study.get_trials()) == cfg.trials == len(result["trials"])
    # every front trial is undominated, and ILP seeds ran first
    records = trial_records(search)
    assert [r.source.startswith("ilp") for r in records[:3]] == [True] * 3
    assert {r.number for r in front(records, metric="accuracy")} == set(result["front"])


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
    assert not result["met_targets"]
    assert "no plan met the targets" in result["message"]
    assert (tmp_path / "out" / "model.mpq").is_file() == (result["chosen"] is not None)


def test_two_processes_share_the_budget_exactly(digits, evaluator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    cfg = _config(digits, tmp_path, trials=16)
    create_search(cfg, evaluator, storage_url=url, name="shared")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "commands",
                "search-worker",
                "--storage",
                url,
                "--name",
                "shared",
                "--worker",
                str(w),
            ],
        )
        for w in (1, 2)
    ]
    assert [p.wait(timeout=600) for p in workers] == [0, 0]
    storage = open_storage(url)
    assert storage is not None
    trials = load_study(storage, "shared").study.get_trials()
    ran = [t for t in trials if not t.user_attrs.get("over_budget")]
    # every trial number below the budget ran exactly once, to the end, and nothing else ran
    assert sorted(t.number for t in ran) == list(range(16))
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in ran)
    assert {t.user_attrs["mpq"]["worker"] for t in ran} == {1, 2}
    seeds = [
        t.user_attrs["source"] for t in ran if str(t.user_attrs.get("source")).startswith("ilp")
    ]
    assert len(seeds) == len(set(seeds)) >= 3  # each enqueued seed taken by one worker only
    extra = [t for t in trials if t.user_attrs.get("over_budget")]
    assert len(extra) <= 2 and all(t.state.name == "FAIL" for t in extra)
    torch.testing.assert_close(len(trials), 16 + len(extra))
