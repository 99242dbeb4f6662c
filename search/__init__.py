"""The mixed-precision search: sensitivity, ILP seeding, Optuna refinement, Pareto front.

A narrow API over Optuna, used in-process by ``mpq search`` and by Celery
workers in the service::

    spec = JobSpec.from_json(body)                      # what the user asked for
    config = spec.search_config(model=..., data=...)    # plus the model and data files
    evaluator = open_evaluator(config)                  # model + data, float baseline
    search = create_search(config, evaluator)           # sensitivity + ILP seeds
    run_trials(search, evaluator)                       # any number of processes
    best_so_far(search), front(trial_records(search), metric=config.metric)  # at any moment
    result = finalize(search, evaluator, out_dir)       # finalists, artifacts

Other processes ``join_search`` the same storage; ``open_search`` joins or (re)creates
it, safe to repeat after a crash; ``progress`` counts a study's trials. A nightly job
passes ``warm=`` (a :class:`WarmStart` from ``load_warm_start``: an earlier job's chosen
plan and front) to start from them.
"""

from __future__ import annotations

from search._config import DEFAULT_HOLDOUT, MAX_HOLDOUT, SAMPLERS, SearchConfig
from search._delete import delete_searches
from search._evaluator import Evaluation, Evaluator, HeldoutScore
from search._finalize import finalize
from search._front import best_so_far, front
from search._open import (
    create_search,
    join_search,
    load_warm_start,
    open_evaluator,
    open_search,
)
from search._space import SearchSpace
from search._spec import METRICS, JobSpec
from search._study import Search, TrialRecord, trial_records
from search._targets import Targets
from search._trials import Progress, progress, run_trials
from search._warm import WarmStart

__all__ = [
    "DEFAULT_HOLDOUT",
    "MAX_HOLDOUT",
    "METRICS",
    "SAMPLERS",
    "Evaluation",
    "Evaluator",
    "HeldoutScore",
    "JobSpec",
    "Progress",
    "Search",
    "SearchConfig",
    "SearchSpace",
    "Targets",
    "TrialRecord",
    "WarmStart",
    "best_so_far",
    "create_search",
    "delete_searches",
    "finalize",
    "front",
    "join_search",
    "load_warm_start",
    "open_evaluator",
    "open_search",
    "progress",
    "run_trials",
    "trial_records",
]
