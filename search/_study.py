"""The Optuna study behind a search: create it, open it, read its trials.

The study is multi-objective (the metric up -- down for kl and nmse, by
``MetricInfo.higher_is_better`` -- and payload bytes down) with the targets
as constraints (``trial.set_constraint``; feasible when ``<= 0``). Parameters are
one categorical per layer (its choice key), asked with a fixed distribution set
(``study.ask(distributions)``); Optuna still stores each parameter with its own
write, so on an RDB storage a trial costs about one commit per layer plus a few
(measured on SQLite with WAL: ~70 ms per digits trial, negligible beside a
MiniLM trial's seconds). A trial's own record is one user attribute.

Creating a search measures sensitivity, enqueues the uniform baselines (int8 and int4 on
every layer, with each activation format of the space; :mod:`search._seeds`) so they are
trials like any other and no result can be dominated by a baseline the job measured,
solves the seeding ILP for a ladder of budgets and enqueues the distinct plans not
already queued (with seeding off, ``ilp_seeds=0``, neither: a plain sampler), then marks
the study ``ready`` (a study a crashed process left half-made is not ready, and is made
again). Then any process
that opens the same storage can run trials (:mod:`search._trials`, which also
explains how the budget holds across processes and crashes).

Pruning: a plan over the size ceiling is closed as PRUNED without evaluation
(its ``bytes`` constraint says by how much); a plan whose metric on a prefix of
the evaluation data is out of reach (:class:`~search._evaluator.Evaluator`) is
closed as PRUNED with its ``metric`` constraint measured on that prefix. Both
count as infeasible for the samplers. Optuna's ``trial.report``/``should_prune``
serve single-objective studies only, so prefix values are kept in user attrs.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Literal

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from engine.data import METRICS
from search._config import SearchConfig
from search._evaluator import Evaluator
from search._seeds import ilp_seeds, uniform_plans
from search._sensitivity import Sensitivity
from search._warm import WarmStart, map_plans, nearest_seed

__all__ = [
    "ATTR",
    "Search",
    "TrialRecord",
    "create_study",
    "load_study",
    "make_record",
    "metric_direction",
    "open_storage",
    "trial_records",
]


optuna.logging.set_verbosity(optuna.logging.WARNING)

ATTR = "mpq"
"""The one user attribute holding a trial's record (bytes, worker, metric, prefix values,
seconds, pruned_by): one storage write instead of one per field."""


@dataclass(frozen=True)
class TrialRecord:
    """One trial as MPQ reports it."""

    number: int
    state: str
    choices: dict[str, str]
    metric: float | None
    bytes: int
    feasible: bool
    source: str
    seconds: float
    prefix_values: tuple[float, ...]
    pruned_by: str | None
    retry_of: int | None = None
    """The number of the trial this one re-runs (its runner died), if any."""
    runner: int | None = None
    """The index of the trial runner that evaluated it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": self.state,
            "metric": self.metric,
            "bytes": self.bytes,
            "feasible": self.feasible,
            "source": self.source,
            "seconds": self.seconds,
            "prefix_values": list(self.prefix_values),
            "pruned_by": self.pruned_by,
            "retry_of": self.retry_of,
            "runner": self.runner,
            "plan": self.choices,
        }


@dataclass
class Search:
    """An open search: its study, configuration and the facts measured at creation."""

    study: optuna.Study
    config: SearchConfig
    baseline: float
    float_bytes: int


def open_storage(url: str | None, *, read_only: bool = False) -> BaseStorage | None:
    """Optuna storage for ``url`` (None: in memory).

    On SQLite: WAL and ``synchronous=NORMAL`` (a commit per ``suggest`` stays cheap),
    and every transaction starts with ``BEGIN IMMEDIATE``. Optuna guards its
    read-then-write state changes (WAITING -> RUNNING, RUNNING -> FAIL) with ``SELECT
    ... FOR UPDATE``, which PostgreSQL honours and SQLite ignores; pysqlite also runs
    SELECTs outside any transaction. Two runners could then both "win" the same
    transition -- seen here as a dead trial retried twice. Taking SQLite's write lock
    at BEGIN makes each such change atomic, at the price of serialising storage access.
    A ``read_only`` reader (the API listing trials) begins deferred instead: under WAL
    it reads the last commit without waiting for a writer, even a stalled one. Readers
    are kept per URL for the life of the process (the API reads a study on every
    ``GET /v1/jobs/{id}/trials``; a new engine each time cost tens of milliseconds).
    """
    if url is None:
        return None
    return _reader(url) if read_only else _new_storage(url, read_only=False)


@functools.lru_cache(maxsize=8)
def _reader(url: str) -> BaseStorage:
    return _new_storage(url, read_only=True)


def _new_storage(url: str, *, read_only: bool) -> BaseStorage:
    """A new RDB storage for ``url`` (see :func:`open_storage`)."""
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    # A reader must not create Optuna's tables (the API on a database no job used yet).
    storage = RDBStorage(url, engine_kwargs=kwargs, skip_table_creation=read_only)
    if url.startswith("sqlite"):
        from sqlalchemy import event

        def _pragmas(conn: Any, _: Any) -> None:
            conn.isolation_level = None  # pysqlite's implicit BEGIN off: SQLAlchemy's below
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        event.listen(storage.engine, "connect", _pragmas)
        event.listen(storage.engine, "begin", _begin)
        storage.engine.dispose()  # reconnect with the pragmas
    return storage


def _sampler(config: SearchConfig, worker: int) -> optuna.samplers.BaseSampler:
    seed = (config.seed + worker) % 2**32  # numpy's RandomState takes 0 to 2^32 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if config.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        if config.sampler == "nsga2":
            size = max(8, min(50, config.trials // 5))
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=size)
    return optuna.samplers.RandomSampler(seed=seed)


def metric_direction(metric: str) -> Literal["maximize", "minimize"]:
    """Optuna's direction for ``metric``'s objective: ``maximize`` or ``minimize``."""
    return "maximize" if METRICS[metric].higher_is_better else "minimize"


def create_study(
    config: SearchConfig,
    ev: Evaluator,
    sensitivity: Sensitivity,
    *,
    storage: BaseStorage | None,
    name: str,
    method: str = "full",
    warm: WarmStart | None = None,
    attrs: dict[str, Any] | None = None,
) -> Search:
    """A new study holding ``config``, the baseline, sensitivity (measured by ``method``)
    and the ILP seeds; ``attrs``: more user attributes to store.

    With ``warm`` (:mod:`search._warm`), its plans mapped onto this model are enqueued
    first (at most half the trial budget), and the enqueued seeds never exceed the
    budget; ``warm_start`` (an attribute ``attrs`` may hold) gains ``seeded_plans``.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=[metric_direction(config.metric), "minimize"],
        sampler=_sampler(config, 0),
    )
    study.set_user_attr("config", config.to_json())
    study.set_user_attr("baseline", ev.baseline)
    study.set_user_attr("float_bytes", ev.float_bytes)
    study.set_user_attr("sensitivity", sensitivity)
    study.set_user_attr("sensitivity_method", method)
    queued: set[tuple[str, ...]] = set()
    ilp = ilp_seeds(config, ev, sensitivity)
    seeds = [(c, f"uniform:{key}") for key, c in uniform_plans(config, ev)]
    seeds += [(c, f"ilp<={budget}") for c, budget in ilp]
    if config.ilp_seeds <= 0:
        seeds = []  # a plain sampler (benchmarks' baseline): nothing enqueued
    attrs = dict(attrs or {})
    if warm is not None:
        fallback = nearest_seed(ilp, warm.chosen_bytes) or (seeds[0][0] if seeds else {})
        limit = max(1, config.trials // 2)
        mapped = map_plans(warm, ev, config.space, fallback, limit=limit)
        seeds = [(c, f"warm:{warm.from_job}") for c in mapped] + seeds
        seeds = seeds[: config.trials]
        attrs["warm_start"] = {**attrs.get("warm_start", {}), "seeded_plans": len(mapped)}
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    for choices, source in seeds:
        if tuple(choices.values()) not in queued:
            queued.add(tuple(choices.values()))
            study.enqueue_trial(choices, user_attrs={"source": source})
    study.set_user_attr("ready", True)
    return Search(study, config, ev.baseline, ev.float_bytes)


def load_study(storage: BaseStorage, name: str, *, worker: int = 0) -> Search:
    """Open an existing search (another process's) for running trials or reading.

    Raises:
        KeyError: no study ``name``, or one whose creation never finished (not ``ready``).
    """
    probe = optuna.load_study(study_name=name, storage=storage)
    if not probe.user_attrs.get("ready"):
        raise KeyError(f"study {name!r} is incomplete: its creation was interrupted")
    config = SearchConfig.from_json(probe.user_attrs["config"])
    study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(config, worker))
    attrs = probe.user_attrs
    return Search(study, config, float(attrs["baseline"]), int(attrs["float_bytes"]))


def trial_records(search: Search) -> list[TrialRecord]:
    """Every trial that ran (those closed for being over budget are left out)."""
    return [
        _record(t)
        for t in search.study.get_trials(deepcopy=False)
        if not t.user_attrs.get("over_budget") and t.state != TrialState.WAITING
    ]


def _record(t: optuna.trial.FrozenTrial) -> TrialRecord:
    attrs = t.user_attrs
    source = str(attrs.get("source", "sampler"))
    history = t.system_attrs.get("retry_history") or [None]
    record = make_record(
        t.number, t.state, dict(t.params), attrs.get(ATTR, {}), t.constraints, source
    )
    runner = attrs.get(ATTR, {}).get("worker")
    return replace(record, retry_of=history[-1], runner=None if runner is None else int(runner))


def make_record(
    number: int,
    state: TrialState,
    params: dict[str, Any],
    rec: dict[str, Any],
    constraints: dict[str, float],
    source: str,
) -> TrialRecord:
    metric = rec.get("metric")
    feasible = state == TrialState.COMPLETE and all(v <= 0 for v in constraints.values())
    return TrialRecord(
        number=number,
        state=state.name.lower(),
        choices={k: str(v) for k, v in params.items()},
        metric=None if metric is None else float(metric),
        bytes=int(rec.get("bytes", 0)),
        feasible=feasible,
        source=source,
        seconds=float(rec.get("seconds", math.nan)),
        prefix_values=tuple(rec.get("prefix_values", ())),
        pruned_by=rec.get("pruned_by"),
    )
