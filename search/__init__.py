"""The mixed-precision search: sensitivity, ILP seeding, Optuna refinement, Pareto front.

A narrow API over Optuna, used in-process by ``mpq search`` and by Celery
workers in the service::

    search = create_search(config, storage_url=None)   # sensitivity + ILP seeds
    run_trials(search, evaluator)                       # any number of processes
    front(trial_records(search))                        # readable at any moment
    result = finalize(search, evaluator, out_dir)       # finalists, artifacts
"""

from __future__ import annotations

from search._config import SAMPLERS, SearchConfig
from search._evaluator import Evaluation, Evaluator
from search._ilp import allocate, budget_ladder
from search._space import DEFAULT_FORMATS, SearchSpace, choice_key, parse_choice
from search._study import Search, TrialRecord, load_study, open_storage, run_trials, trial_records
from search._targets import Targets, parse_bytes

__all__ = [
    "DEFAULT_FORMATS",
    "SAMPLERS",
    "Evaluation",
    "Evaluator",
    "Search",
    "SearchConfig",
    "SearchSpace",
    "Targets",
    "TrialRecord",
    "allocate",
    "budget_ladder",
    "choice_key",
    "load_study",
    "open_storage",
    "parse_bytes",
    "parse_choice",
    "run_trials",
    "trial_records",
]
