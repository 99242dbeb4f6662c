"""Greedy descent from the smallest plan meeting the targets: one layer at a time, downward.

TPE places the few large layers well but rarely pins down the small ones, whose choices
differ by tens of bytes; the ILP's ladder of budgets has gaps of hundreds. On the digits
CNN the true optimum (``bench/oracle.py``) was one layer away from a plan the search had
already found. So every other trial after the seeds is a *descent* step: take the
smallest feasible completed plan ``P`` and, among its neighbours that change one layer
``l`` to a choice ``c`` of fewer bytes and that no trial has tried yet, run the one whose
predicted damage (the sensitivity table, additive over layers) rises least per byte
saved::

    score(l, c) = (d[l][c] - d[l][P[l]]) / (bytes(P[l]) - bytes(c))

A neighbour that misses the targets is tried and never proposed again; when ``P`` has
no untried neighbour the next feasible plan by size is descended from. Descent serves
searches with a metric target (the smallest plan is the goal); with only a size target
the sampler alone runs.
"""

from __future__ import annotations

from collections.abc import Mapping

import optuna
from optuna.trial import TrialState

from search._evaluator import Evaluator
from search._space import parse_choice
from search._study import ATTR, Search

__all__ = ["next_descent"]


def next_descent(
    search: Search,
    ev: Evaluator,
    sensitivity: Mapping[str, Mapping[str, float]],
    *,
    starts: int = 8,
) -> dict[str, str] | None:
    """The next plan to try (see the module doc), or None when none is left.

    Args:
        search: the open search.
        ev: gives each layer choice's bytes.
        sensitivity: layer -> choice key -> predicted damage.
        starts: at most this many feasible plans, smallest first, are descended from.
    """
    if not search.config.targets.has_metric_target or not sensitivity:
        return None
    trials = search.study.get_trials(deepcopy=False)
    tried = {_key(t.params) for t in trials if t.params}
    feasible = sorted(
        (t for t in trials if _feasible(t)),
        key=lambda t: int(t.user_attrs.get(ATTR, {}).get("bytes", 0)),
    )
    scale = search.config.space.scale
    space = search.config.space
    for t in feasible[:starts]:
        plan = {k: str(v) for k, v in t.params.items()}
        best: tuple[float, dict[str, str]] | None = None
        for layer in ev.layers:
            name = layer.name
            now = plan.get(name)
            per = sensitivity.get(name)
            if now is None or per is None or now not in per:
                continue
            now_bytes = ev.layer_bytes(name, parse_choice(now, scale=scale))
            for c in ev.choices(space, name):
                if c == now or c not in per:
                    continue
                saved = now_bytes - ev.layer_bytes(name, parse_choice(c, scale=scale))
                if saved <= 0:
                    continue
                candidate = {**plan, name: c}
                if _key(candidate) in tried:
                    continue
                score = (per[c] - per[now]) / saved
                if best is None or score < best[0]:
                    best = (score, candidate)
        if best is not None:
            return best[1]
    return None


def _feasible(t: optuna.trial.FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())


def _key(params: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in params.items()))
