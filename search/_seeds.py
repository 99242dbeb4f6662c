"""The plans a study starts with: the uniform baselines and the ILP's seeds.

Both are enqueued before the sampler asks anything (:func:`search._study.create_study`):
the uniform plans so that a result is never dominated by a baseline the job measured,
the ILP's plans so that the search starts near the front the sensitivity predicts.
"""

from __future__ import annotations

from search._config import SearchConfig
from search._evaluator import Evaluator
from search._ilp import allocate, budget_ladder
from search._sensitivity import Sensitivity
from search._space import parse_choice

__all__ = ["UNIFORM_WEIGHTS", "ilp_seeds", "uniform_plans"]

UNIFORM_WEIGHTS = ("int8", "int4")
"""Weight formats of the uniform baselines (where the space has them)."""


def uniform_plans(config: SearchConfig, ev: Evaluator) -> list[tuple[str, dict[str, str]]]:
    """The uniform baselines as plans of the space: ``(key, layer -> choice)``.

    One per weight format of :data:`UNIFORM_WEIGHTS` in the space and activation format
    of the space (weight-only with ``float``), rounded with GPTQ where the space allows
    it. Pinned layers keep their pin; embeddings round to nearest (their only uniform
    rounding, :meth:`SearchSpace.choices`).
    """
    space = config.space
    rounding = "gptq" if "gptq" in space.roundings else space.roundings[0]
    out = []
    for weight in (w for w in UNIFORM_WEIGHTS if w in space.formats):
        for act in space.activations:
            key = f"{weight}/{rounding}/{act}"
            plan = {}
            for layer in ev.layers:
                options = ev.choices(space, layer.name)
                near = f"{weight}/nearest/{act}"
                plan[layer.name] = (
                    key if key in options else near if near in options else options[0]
                )
            out.append((key, plan))
    return out


def ilp_seeds(
    config: SearchConfig, ev: Evaluator, sensitivity: Sensitivity
) -> list[tuple[dict[str, str], int]]:
    """The ILP's plans for a ladder of byte budgets, distinct, with their budget.

    Damage is taken as additive over layers (:mod:`search._sensitivity`); for each
    budget of :func:`~search._ilp.budget_ladder` the least-damage plan within it
    (:func:`~search._ilp.allocate`).
    """
    if config.ilp_seeds <= 0:
        return []
    names = [layer.name for layer in ev.layers]
    keys = [list(sensitivity[n]) for n in names]
    damage = [[sensitivity[n][k] for k in ks] for n, ks in zip(names, keys, strict=True)]
    scale = config.space.scale
    sizes = [
        [ev.layer_bytes(n, parse_choice(k, scale=scale)) for k in ks]
        for n, ks in zip(names, keys, strict=True)
    ]
    fixed = ev.other_bytes
    smallest = fixed + sum(min(s) for s in sizes)
    largest = fixed + sum(max(s) for s in sizes)
    ceiling = config.targets.byte_ceiling(ev.float_bytes)
    seen: set[tuple[str, ...]] = set()
    out = []
    for budget in budget_ladder(smallest, largest, steps=config.ilp_seeds, ceiling=ceiling):
        pick = allocate(damage, sizes, budget - fixed)
        if pick is None:
            continue
        choice = tuple(ks[i] for ks, i in zip(keys, pick, strict=True))
        if choice not in seen:
            seen.add(choice)
            out.append((dict(zip(names, choice, strict=True)), budget))
    return out
