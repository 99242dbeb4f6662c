"""Runners that die: a trial left running by a dead runner is failed, retried once, and the
budget still counts exactly ``trials`` finished trials (the digits CNN, on SQLite)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from engine.ir import save_ir
from search import (
    SearchConfig,
    SearchSpace,
    Targets,
    create_search,
    open_evaluator,
    open_search,
    progress,
    run_trials,
)
from search._study import load_study, open_storage
from search._trials import fail_stale_trials
from tests.conftest import Digits

SPACE = SearchSpace(formats=("int2", "int4", "int8"))


def _config(digits: Digits, tmp: Path, trials: int = 8, seeds: int = 4) -> SearchConfig:
    return SearchConfig(
        model=str(digits.pt2),
        data=str(digits.npz),
        metric="accuracy",
        targets=Targets(max_drop=0.05),
        space=SPACE,
        trials=trials,
        seed=0,
        cache_dir=str(tmp / "cache"),
        ilp_seeds=seeds,
    )


@pytest.fixture(scope="module")
def evaluator(digits: Digits, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return open_evaluator(_config(digits, tmp_path_factory.mktemp("ev")))


def _orphan(study: optuna.Study, evaluator) -> optuna.Trial:  # type: ignore[no-untyped-def]
    """Ask a trial and abandon it, as a runner SIGKILLed mid-evaluation would."""
    dists = {
        layer.name: optuna.distributions.CategoricalDistribution(SPACE.choices(layer.name))
        for layer in evaluator.layers
    }
    return study.ask(dists)


def test_a_dead_runners_trial_is_retried_and_the_budget_is_exact(
    digits: Digits, evaluator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = create_search(_config(digits, tmp_path), evaluator, storage_url=url, name="s")
    dead = _orphan(search.study, evaluator)
    assert progress(search).running == 1
    # A live runner within the grace period leaves it alone...
    assert fail_stale_trials(search.study, grace_s=60) == []
    time.sleep(1.2)
    ran = run_trials(search, evaluator, heartbeat_s=0.2, grace_s=1.0)
    trials = search.study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [dead.number]  # ...past it, the trial is failed
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].params == dead.params
    assert retry[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    state = progress(search)
    assert (state.done, state.running, ran) == (8, 0, 8)  # the budget, no more, no less
    assert len(trials) == 9  # 8 counted + the dead attempt


def test_a_live_runners_heartbeat_keeps_its_trial(
    digits: Digits, evaluator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    config = _config(digits, tmp_path, 4, seeds=0)
    search = create_search(config, evaluator, storage_url=url, name="s")
    trial = _orphan(search.study, evaluator)
    search.study._storage.set_trial_system_attr(trial._trial_id, "mpq_heartbeat", time.time())
    time.sleep(0.5)
    assert fail_stale_trials(search.study, grace_s=0.4) == [trial.number]
    other = _orphan(search.study, evaluator)  # the retry (no ILP seeds wait before it)
    assert other.params == trial.params
    search.study._storage.set_trial_system_attr(other._trial_id, "mpq_heartbeat", time.time())
    assert fail_stale_trials(search.study, grace_s=0.4) == []


def test_open_search_remakes_a_study_whose_creation_was_interrupted(
    digits: Digits, evaluator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = open_storage(url)
    optuna.create_study(storage=storage, study_name="s")  # killed before it was ready
    with pytest.raises(KeyError, match="incomplete"):
        load_study(storage, "s")  # type: ignore[arg-type]
    search = open_search(_config(digits, tmp_path), evaluator, storage_url=url, name="s")
    assert search.study.user_attrs["ready"] is True
    again = open_search(_config(digits, tmp_path), evaluator, storage_url=url, name="s")
    assert again.study._study_id == search.study._study_id  # complete: joined, not remade


def test_opening_reports_each_step_and_a_raising_callback_stops_it(
    digits: Digits, evaluator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    steps: list[tuple[str, int, int]] = []

    class Cancelled(Exception):
        pass

    def cancel_at_3(step: str, done: int, total: int) -> None:
        steps.append((step, done, total))
        if (step, done) == ("sensitivity", 3):
            raise Cancelled

    small = SearchSpace(formats=("int4", "int8"), roundings=("nearest",), activations=("a8",))
    config = replace(_config(digits, tmp_path), space=small)  # few sensitivity steps
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(Cancelled):
        open_search(config, evaluator, storage_url=url, name="s", on_step=cancel_at_3)
    n = sum(len(small.choices(layer.name)) for layer in evaluator.layers)
    assert steps == [("sensitivity", 1, n), ("sensitivity", 2, n), ("sensitivity", 3, n)]
    with pytest.raises(KeyError):  # stopped before any study was made
        load_study(open_storage(url), "s")  # type: ignore[arg-type]

    steps.clear()
    search = open_search(
        config, evaluator, storage_url=url, name="s", on_step=lambda *a: steps.append(a)
    )
    assert steps == [("sensitivity", k, n) for k in range(1, n + 1)] + [("seeding", 0, 1)]
    assert search.study.user_attrs["ready"] is True
    steps.clear()
    open_search(config, evaluator, storage_url=url, name="s", on_step=lambda *a: steps.append(a))
    assert steps == []  # joined: nothing to prepare

    ir = tmp_path / "digits.ir"
    save_ir(evaluator.ir, ir)
    ev = open_evaluator(replace(config, model=str(ir)), on_step=lambda *a: steps.append(a))
    assert steps == [("loading", 0, 1), ("calibrating", 0, 1)]
    assert ev.baseline == evaluator.baseline


def test_past_the_deadline_a_dead_runners_trial_is_still_settled(
    digits: Digits, evaluator, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'study.db'}"
    search = create_search(_config(digits, tmp_path), evaluator, storage_url=url, name="s")
    dead = _orphan(search.study, evaluator)
    time.sleep(1.2)
    ran = run_trials(search, evaluator, deadline=time.time() - 1, heartbeat_s=0.2, grace_s=1.0)
    state = progress(search)
    assert (ran, state.running) == (0, 0)  # nothing ran, and nothing is left running
    assert search.study.get_trials()[dead.number].state == TrialState.FAIL
