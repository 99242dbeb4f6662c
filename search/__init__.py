"""The mixed-precision search: sensitivity, ILP seeding, Optuna refinement, Pareto front.

A narrow API over Optuna, used in-process by ``mpq search`` and by Celery
workers in the service::

    evaluator = open_evaluator(config)                  # model + data, float baseline
    search = create_search(config, evaluator)           # sensitivity + ILP seeds
    run_trials(search, evaluator)                       # any number of processes
    best_so_far(search), front(trial_records(search))   # readable at any moment
    result = finalize(search, evaluator, out_dir)       # finalists, artifacts
"""

from __future__ import annotations

from search._config import SAMPLERS, SearchConfig
from search._evaluator import Evaluation, Evaluator
from search._ilp import allocate, budget_ladder
from search._run import (
    best_so_far,
    create_search,
    finalize,
    front,
    join_search,
    open_evaluator,
    open_search,
)
from search._space import DEFAULT_FORMATS, SearchSpace, choice_key, parse_choice
from search._spec import METRICS, SPEC_VERSION, JobSpec
from search._study import Search, TrialRecord, load_study, open_storage, trial_records
from search._targets import Targets, parse_bytes
from search._trials import Progress, fail_stale_trials, progress, run_trials

__all__ = [
    "DEFAULT_FORMATS",
    "METRICS",
    "SAMPLERS",
    "SPEC_VERSION",
    "Evaluation",
    "Evaluator",
    "JobSpec",
    "Progress",
    "Search",
    "SearchConfig",
    "SearchSpace",
    "Targets",
    "TrialRecord",
    "allocate",
    "best_so_far",
    "budget_ladder",
    "choice_key",
    "create_search",
    "fail_stale_trials",
    "finalize",
    "front",
    "join_search",
    "load_study",
    "open_evaluator",
    "open_search",
    "open_storage",
    "parse_bytes",
    "parse_choice",
    "progress",
    "run_trials",
    "trial_records",
]
