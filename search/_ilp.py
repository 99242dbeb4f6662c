"""Seeding: the bit allocation that minimises predicted damage under a size budget.

With ``d[l][c]`` the damage of layer ``l`` alone in choice ``c`` and ``s[l][c]``
its bytes, treating damage as additive (HAWQ-V3's assumption) gives the
multiple-choice knapsack::

    minimise   sum_{l,c} d[l][c] x[l][c]
    subject to sum_c x[l][c] = 1            for every layer l
               sum_{l,c} s[l][c] x[l][c] <= B
               x[l][c] in {0, 1}

solved exactly by ``scipy.optimize.milp`` (HiGHS branch and bound) for each
budget ``B`` of a ladder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

__all__ = ["allocate", "budget_ladder"]


def allocate(
    damage: Sequence[Sequence[float]], sizes: Sequence[Sequence[int]], budget: float
) -> list[int] | None:
    """One choice index per layer minimising total damage within ``budget`` bytes.

    Returns None when even the smallest choices exceed the budget.
    """
    if sum(min(s) for s in sizes) > budget:
        return None
    offsets = np.cumsum([0, *(len(d) for d in damage)])
    n = int(offsets[-1])
    cost = np.concatenate([np.asarray(d, dtype=np.float64) for d in damage])
    size = np.concatenate([np.asarray(s, dtype=np.float64) for s in sizes])
    one_each = np.zeros((len(damage), n))
    for layer in range(len(damage)):
        one_each[layer, offsets[layer] : offsets[layer + 1]] = 1.0
    constraints = [
        LinearConstraint(one_each, 1.0, 1.0),
        LinearConstraint(size[None, :], -np.inf, float(budget)),
    ]
    res = milp(cost, constraints=constraints, integrality=np.ones(n), bounds=Bounds(0, 1))
    if res.x is None:
        return None
    x = np.round(res.x).astype(int)
    return [int(np.argmax(x[offsets[i] : offsets[i + 1]])) for i in range(len(damage))]


def budget_ladder(smallest: int, largest: int, *, steps: int, ceiling: int | None) -> list[int]:
    """Budgets from ``smallest`` to ``largest`` bytes, geometric, denser below a ceiling.

    With a size ceiling, half the rungs lie in ``[smallest, ceiling]`` and the
    ceiling itself is one of them.
    """
    if largest <= smallest:
        return [largest]
    top = min(largest, ceiling) if ceiling is not None else largest
    rungs = set(np.geomspace(smallest, max(top, smallest), steps).round().astype(int).tolist())
    if ceiling is not None and ceiling < largest:
        rungs |= set(
            np.geomspace(ceiling, largest, max(2, steps // 2)).round().astype(int).tolist()
        )
    return sorted(rungs)
