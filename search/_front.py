"""Read a search's front at any moment: the Pareto front, and the plan chosen so far.

A trial is on the front when no other completed trial has a metric at least as good
(as high, or as low for a lower-is-better metric such as kl) and at most as many
bytes, strictly better on one of the two.
"""

from __future__ import annotations

from engine.data import METRICS
from search._study import Search, TrialRecord, trial_records

__all__ = ["best_so_far", "front", "goodness"]


def goodness(metric: str, value: float) -> float:
    """``value`` oriented so that higher is better: itself, or ``-value`` for kl and nmse."""
    return value if METRICS[metric].higher_is_better else -value


def best_so_far(search: Search) -> TrialRecord | None:
    """The plan the search would choose now among finished trials (readable at any moment).

    The smallest trial meeting the targets when there is a metric target, else the
    best-scoring one within the size ceiling; None while no trial meets them.
    """
    feasible = [r for r in trial_records(search) if r.feasible and r.metric is not None]
    if not feasible:
        return None
    metric = search.config.metric

    def good(r: TrialRecord) -> float:
        return goodness(metric, r.metric or 0.0)

    if search.config.targets.has_metric_target:
        return min(feasible, key=lambda r: (r.bytes, -good(r)))
    return max(feasible, key=lambda r: (good(r), -r.bytes))


def front(records: list[TrialRecord], *, metric: str) -> list[TrialRecord]:
    """Completed trials no other completed trial beats on both ``metric`` and bytes.

    Only ``metric``'s direction matters (every higher-is-better metric gives the same front).
    """
    done = [
        (goodness(metric, r.metric), r)
        for r in records
        if r.state == "complete" and r.metric is not None
    ]
    out = [
        r
        for g, r in done
        if not any(
            og >= g and o.bytes <= r.bytes and (og > g or o.bytes < r.bytes) for og, o in done
        )
    ]
    return sorted(out, key=lambda r: r.bytes)
