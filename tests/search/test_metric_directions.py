"""Lower-is-better metrics in the search: a digits search on ``kl`` with ``max_metric``,
and the front and the choice for either direction."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.data import evaluate
from engine.errors import MPQError
from engine.io import load_artifact
from search import (
    SearchConfig,
    SearchSpace,
    Targets,
    create_search,
    finalize,
    front,
    open_evaluator,
    run_trials,
    trial_records,
)
from search._study import TrialRecord

CEILING = 0.01  # mean KL in nats: int8 everywhere gives ~3e-4 on digits, int4 ~0.024


def _record(number: int, metric: float, nbytes: int) -> TrialRecord:
    return TrialRecord(number, "complete", {}, metric, nbytes, True, "sampler", 0.0, (), None)


def test_the_front_follows_the_metric_direction() -> None:
    records = [
        _record(0, 0.5, 100),
        _record(1, 0.1, 200),
        _record(2, 0.3, 300),
        _record(3, 0.05, 400),
    ]
    assert [r.number for r in front(records, metric="kl")] == [0, 1, 3]  # 2: beaten by 1
    assert [r.number for r in front(records, metric="accuracy")] == [0]  # 0: best and smallest
    assert [r.number for r in front(records, metric="nmse")] == [0, 1, 3]


@pytest.fixture(scope="module")
def kl_search(digits, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A short seeded digits search on kl <= CEILING, finalized (the result and its files)."""
    tmp = tmp_path_factory.mktemp("kl")
    config = SearchConfig(
        model=str(digits.pt2),
        data=str(digits.npz),
        metric="kl",
        targets=Targets(max_metric=CEILING),
        space=SearchSpace(formats=("int2", "int4", "int8")),
        trials=10,
        ilp_seeds=4,
        seed=0,
    )
    ev = open_evaluator(config)
    search = create_search(config, ev)
    run_trials(search, ev)
    return search, ev, finalize(search, ev, tmp / "out"), tmp / "out"


def test_kl_search_meets_the_ceiling_on_the_file(kl_search) -> None:  # type: ignore[no-untyped-def]
    search, ev, result, out = kl_search
    assert search.study.directions[0].name == "MINIMIZE" and search.baseline == 0.0
    assert result["met_targets"] and result["targets"]["metric_ceiling"] == CEILING
    assert result["targets"]["metric_floor"] is None
    chosen = result["chosen"]
    assert 0 < chosen["metric"] <= CEILING
    assert (out / "pareto.png").stat().st_size > 0 and (out / "layers.png").stat().st_size > 0
    # the smallest plan meeting the ceiling
    feasible = [t for t in result["trials"] if t["feasible"]]
    assert chosen["payload_bytes"] == min(t["bytes"] for t in feasible)
    # kl measured on model.mpq, against torch's own KL of the two softmaxes
    art = load_artifact(out / "model.mpq")
    q = evaluate(art.module(), ev.data, "evaluation").double()
    ref = torch.cat(ev.reference).double()
    expected = F.kl_div(
        F.log_softmax(q, -1), F.log_softmax(ref, -1), reduction="batchmean", log_target=True
    )
    assert chosen["metric"] == pytest.approx(float(expected), abs=1e-9)
    # the related classification metrics, measured on the same file and data
    metrics = chosen["metrics"]
    assert list(metrics) == ["kl", "accuracy", "agreement", "top5"]
    assert metrics["kl"] == chosen["metric"]
    agree = float((q.argmax(-1) == ref.argmax(-1)).double().mean())
    assert metrics["agreement"] == agree and 0.9 < agree <= metrics["top5"] <= 1.0
    assert json.loads((out / "result.json").read_text())["chosen"]["metrics"] == metrics


def test_kl_search_front_and_pruning_go_downwards(kl_search) -> None:  # type: ignore[no-untyped-def]
    search, _, result, _ = kl_search
    done = [t for t in result["trials"] if t["state"] == "complete"]
    on_front = [t for t in done if t["number"] in result["front"]]
    assert on_front and {r.number for r in front(trial_records(search), metric="kl")} == set(
        result["front"]
    )
    for t in on_front:  # nothing as small with a lower kl, nothing as low and smaller
        assert not any(
            o["metric"] <= t["metric"]
            and o["bytes"] <= t["bytes"]
            and (o["metric"] < t["metric"] or o["bytes"] < t["bytes"])
            for o in done
        )
    # along the front, more bytes buy a lower kl
    ordered = sorted(on_front, key=lambda t: t["bytes"])
    assert all(a["metric"] > b["metric"] for a, b in itertools.pairwise(ordered))
    for t in result["trials"]:
        assert t["feasible"] == (t["state"] == "complete" and t["metric"] <= CEILING)
        if t["pruned_by"] == "metric":  # pruned on a prefix: above the ceiling there
            assert t["metric"] > CEILING and len(t["prefix_values"]) == 1
    assert sum(t["pruned_by"] == "metric" for t in result["trials"]) >= 3  # seeded: 7 of 10


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A 3-class linear model (.pt2) and 40 samples without labels."""
    tmp = tmp_path_factory.mktemp("three")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).eval()
    program = torch.export.export(model, (torch.randn(8, 4),))
    torch.export.save(program, tmp / "m.pt2")
    np.savez(tmp / "d.npz", x=np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32))
    return tmp / "m.pt2", tmp / "d.npz"


def test_a_metric_the_outputs_cannot_serve_fails_before_the_search(three_classes) -> None:  # type: ignore[no-untyped-def]
    model, data = three_classes

    def config(metric: str, **targets: float) -> SearchConfig:
        return SearchConfig(str(model), str(data), metric, Targets(**targets), trials=1)

    for metric, words in (("top5", "at least 5 classes"), ("accuracy", "'labels' array")):
        with pytest.raises(MPQError, match=words) as info:
            open_evaluator(config(metric), trust_uploads=True)
        assert info.value.code == "metric_not_applicable"
    ev = open_evaluator(config("kl", max_metric=0.01), trust_uploads=True)
    assert ev.related == ("kl", "agreement") and ev.baseline == 0.0
