"""Running a study's trials from any number of processes, within one budget, surviving crashes.

Budget. A trial *holds a slot* while it is RUNNING and after it finished COMPLETE or
PRUNED; FAILed trials hold none. A runner asks a trial, then counts the slots held by
trials numbered below it: if they already fill the budget the new trial is closed as
FAIL with ``over_budget`` and the runner stops. Trial numbers are assigned by the
storage, so of two racing runners the lower number wins and the higher one sees it:
at most ``budget`` trials ever hold a slot. The lowest over-budget trial saw ``budget``
slots held by trials that were not over budget, which finish (or die and are retried),
so no budget is lost either.

Crashes. With heartbeats on (``heartbeat_s``), a thread of the runner writes each running
trial's heartbeat (wall-clock seconds in the system attribute ``mpq_heartbeat``) every
``heartbeat_s`` seconds. A runner about to ask first fails the running trials whose last
heartbeat (or start, before the first beat) is older than ``grace_s`` -- their runner
died -- and enqueues each again, WAITING, with the same parameters. The failed attempt
frees its slot and the retry takes one: a killed worker's trial is neither lost nor
counted twice. Of two runners failing the same trial the storage lets one win
(``UpdateFinishedTrialError`` for the other), so it is retried once.

Why not Optuna's own heartbeat (``RDBStorage(heartbeat_interval=...)``): it is written
only inside ``Study.optimize``, MPQ drives the study by ask/tell, and Optuna ignores a
running trial that has no heartbeat row yet, so a runner killed between ``ask`` and its
first beat would leave a trial running forever. A trial retried ``MAX_RETRIES`` times
(a plan that kills its worker each time) is left failed and the budget moves on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from search._descent import next_descent
from search._evaluator import Evaluator
from search._study import ATTR, Search, TrialRecord, make_record

__all__ = ["MAX_RETRIES", "Progress", "fail_stale_trials", "progress", "run_trials"]

MAX_RETRIES = 3
"""How often a trial whose runner died is run again before it is left failed."""

_BEAT = "mpq_heartbeat"
_HOLDS_SLOT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


@dataclass(frozen=True)
class Progress:
    """Where a study stands against its budget.

    Attributes:
        done: trials finished COMPLETE or PRUNED (what the budget counts).
        running: trials running now (including ones whose runner died and that
            are not yet past the heartbeat grace period).
        budget: the trial budget.
    """

    done: int
    running: int
    budget: int

    @property
    def exhausted(self) -> bool:
        """Every slot of the budget is done or being worked on."""
        return self.done + self.running >= self.budget

    @property
    def settled(self) -> bool:
        """Nothing runs any more (the moment to finalize, once the budget is spent)."""
        return self.running == 0


def progress(search: Search) -> Progress:
    """Count the study's trials against its budget (one storage read)."""
    trials = search.study.get_trials(deepcopy=False, states=_HOLDS_SLOT)
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return Progress(len(trials) - running, running, search.config.trials)


def run_trials(
    search: Search,
    ev: Evaluator,
    *,
    worker: int = 0,
    on_trial: Callable[[TrialRecord], None] | None = None,
    deadline: float | None = None,
    heartbeat_s: float | None = None,
    grace_s: float = 60.0,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Run trials until the budget is taken or the deadline passes; return how many ran.

    Args:
        search: the open search (any process's view of the shared study).
        ev: this process's evaluator of the search's model and data.
        worker: this runner's index (recorded with each trial; seeds its sampler).
        on_trial: called after each trial is told; may raise to stop the runner.
        deadline: ``time.time()`` after which no trial starts; ``None`` for the
            configuration's ``timeout_s`` from now (no limit when that is unset).
        heartbeat_s: write each running trial's heartbeat this often and fail other
            runners' trials silent for ``grace_s`` (``None``: no heartbeats, for a
            search whose runners all live in one process tree, like ``mpq search``).
        grace_s: seconds without a heartbeat after which a running trial is dead;
            several ``heartbeat_s`` so a busy runner is not declared dead.
        should_stop: asked before each trial; True ends the run (a cancelled job).
    """
    config, study = search.config, search.study
    space = config.space
    dists: dict[str, BaseDistribution] = {
        layer.name: CategoricalDistribution(ev.choices(space, layer.name)) for layer in ev.layers
    }
    if deadline is None and config.timeout_s is not None:
        deadline = time.time() + config.timeout_s
    ev.prime(space)
    sensitivity = study.user_attrs.get("sensitivity") or {}
    ran = 0
    while deadline is None or time.time() < deadline:
        if should_stop is not None and should_stop():
            break
        if heartbeat_s is not None:
            fail_stale_trials(study, grace_s=grace_s)
        state = progress(search)
        if state.exhausted:
            break  # the budget is taken (a race past this check is caught below)
        if state.done % 2 == 1 and not _waiting(study):
            plan = next_descent(search, ev, sensitivity)  # every other trial after the seeds
            if plan is not None:
                study.enqueue_trial(plan, user_attrs={"source": "descent"})
        trial = study.ask(dists)
        if _slots_below(study, trial.number) >= config.trials:
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=TrialState.FAIL)
            break
        with _beating(study, trial._trial_id, heartbeat_s):
            record = _evaluate(search, ev, trial, worker)
        if record is None:
            continue  # declared dead meanwhile and retried by another runner
        ran += 1
        if on_trial is not None:
            on_trial(record)
    if heartbeat_s is not None:
        # Past the deadline no loop turn ran: still settle dead runners' trials, or the
        # study would never look finished (their retries wait, and are never run).
        fail_stale_trials(study, grace_s=grace_s)
    return ran


def _waiting(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def _slots_below(study: optuna.Study, number: int) -> int:
    trials = study.get_trials(deepcopy=False, states=_HOLDS_SLOT)
    return sum(1 for t in trials if t.number < number)


def _evaluate(
    search: Search, ev: Evaluator, trial: optuna.Trial, worker: int
) -> TrialRecord | None:
    """Evaluate one asked trial and tell the study; None if the trial was failed meanwhile."""
    config, study, targets = search.config, search.study, search.config.targets
    floor = targets.metric_floor(search.baseline)
    ceiling = targets.byte_ceiling(search.float_bytes)
    t0 = time.perf_counter()
    plan = config.space.plan(dict(trial.params))
    nbytes = ev.payload_bytes(plan)
    rec: dict[str, Any] = {"bytes": nbytes, "worker": worker}
    constraints: dict[str, float] = {}
    values: list[float] | None = None
    if ceiling is not None and nbytes > ceiling:
        constraints["bytes"] = (nbytes - ceiling) / ceiling
        rec["pruned_by"] = "size"
    else:
        result = ev.evaluate(plan, floor=floor, ceiling=targets.metric_ceiling())
        constraints = targets.constraints(
            result.value, nbytes, baseline=search.baseline, float_bytes=search.float_bytes
        )
        rec.update(metric=result.value, prefix_values=list(result.prefix_values))
        if result.pruned:
            rec["pruned_by"] = "metric"
        else:
            values = [result.value, float(nbytes)]
    rec["seconds"] = time.perf_counter() - t0  # evaluation only: storage writes follow
    state = TrialState.COMPLETE if values is not None else TrialState.PRUNED
    try:
        for key, value in constraints.items():
            trial.set_constraint(key, value)
        trial.set_user_attr(ATTR, rec)
        study.tell(trial, values, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        # Its heartbeat lapsed (a stalled process) and another runner failed and
        # re-enqueued it: the retry counts, this evaluation does not.
        return None
    source = str(trial.user_attrs.get("source", "sampler"))
    return make_record(trial.number, state, dict(trial.params), rec, constraints, source)


def fail_stale_trials(study: optuna.Study, *, grace_s: float) -> list[int]:
    """Fail the running trials silent for ``grace_s`` seconds and enqueue their retries.

    Returns:
        The numbers of the trials this call failed (another runner may fail others).
    """
    now = time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        started = t.datetime_start.timestamp() if t.datetime_start is not None else now
        if now - float(t.system_attrs.get(_BEAT, started)) <= grace_s:
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # finished or failed by someone else meanwhile
        failed.append(t.number)
        history = [*t.system_attrs.get("retry_history", []), t.number]
        if len(history) > MAX_RETRIES:
            continue
        system = {k: v for k, v in t.system_attrs.items() if k != _BEAT}
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=t.params,
                distributions=t.distributions,
                user_attrs=t.user_attrs,
                system_attrs=system | {"failed_trial": history[0], "retry_history": history},
            )
        )
    return failed


@contextmanager
def _beating(study: optuna.Study, trial_id: int, interval: float | None) -> Iterator[None]:
    """Write ``trial_id``'s heartbeat every ``interval`` seconds while the block runs."""
    if interval is None:
        yield
        return
    storage = study._storage
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.set_trial_system_attr(trial_id, _BEAT, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # declared dead by another runner: _evaluate will find out
            except Exception:  # a missed beat is retried; the trial goes on
                pass
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
