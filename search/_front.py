"""Read a search's front at any moment: the Pareto front, and the plan chosen so far.

A trial is on the front when no other completed trial has a metric at least as high
and at most as many bytes, strictly better on one of the two.
"""

from __future__ import annotations

from search._study import Search, TrialRecord, trial_records

__all__ = ["best_so_far", "front"]


def best_so_far(search: Search) -> TrialRecord | None:
    """The plan the search would choose now among finished trials (readable at any moment).

    The smallest trial meeting the targets when there is a metric target, else the
    most accurate one within the size ceiling; None while no trial meets them.
    """
    feasible = [r for r in trial_records(search) if r.feasible and r.metric is not None]
    if not feasible:
        return None
    if search.config.targets.has_metric_target:
        return min(feasible, key=lambda r: (r.bytes, -(r.metric or 0.0)))
    return max(feasible, key=lambda r: (r.metric or 0.0, -r.bytes))


def front(records: list[TrialRecord]) -> list[TrialRecord]:
    """Completed trials no other completed trial beats on both metric and bytes."""
    done = [r for r in records if r.state == "complete" and r.metric is not None]
    out = []
    for r in done:
        assert r.metric is not None
        dominated = any(
            o.metric is not None
            and o.metric >= r.metric
            and o.bytes <= r.bytes
            and (o.metric > r.metric or o.bytes < r.bytes)
            for o in done
        )
        if not dominated:
            out.append(r)
    return sorted(out, key=lambda r: r.bytes)
