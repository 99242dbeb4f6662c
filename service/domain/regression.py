"""Regression alerts: a scheduled job compared with its schedule's last succeeded run.

A nightly job compresses a new model version to the same target as last night; the team
wants to hear when the result got worse. :func:`find_regression` compares the result of a
scheduled job with the newest succeeded job of the same schedule whose metric and targets
are the same (a job at another target is no reference), on three counts:

- ``bytes``: the chosen file's size (``result.chosen.file_bytes``, what a user downloads)
  grew by more than ``tolerance.bytes`` relative: ``(b - b_prev) / b_prev > tol_b``;
- ``metric``: the chosen file's metric got worse by more than ``tolerance.metric`` in the
  metric's own units (``m_prev - m > tol_m`` when higher is better, ``m - m_prev > tol_m``
  for kl and nmse), read on the held-out split when both runs have one (what the user
  will see on new data), else on the search split;
- ``met_targets``: the previous run met its targets and this one does not.

The document stored on the job (``jobs.regression``) and sent with ``job.regressed``::

    {"regressed": true, "compared_with": 41, "what": ["bytes"],
     "bytes": {"previous": 9120, "current": 10480, "change": 1360, "relative": 0.149,
               "tolerance": 0.02, "regressed": true},
     "metric": {"name": "accuracy", "split": "heldout", "previous": 0.981, "current": 0.978,
                "change": -0.003, "tolerance": 0.005, "regressed": false},
     "met_targets": {"previous": true, "current": true, "regressed": false},
     "summary": "bytes up 14.9% (9,120 -> 10,480)"}

No reference run (the schedule's first, or none at the same target) or a job that no
schedule submitted: ``None``, nothing compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.data import METRICS
from service.db.models import Job, JobStatus

__all__ = ["RegressionTolerance", "find_regression"]

# How many of the schedule's latest succeeded runs are searched for one at the same target.
REFERENCE_WINDOW = 50


@dataclass(frozen=True)
class RegressionTolerance:
    """How much worse a run may get before it counts as a regression.

    Attributes:
        bytes: relative growth of the chosen file allowed (0.02: 2 %).
        metric: absolute worsening of the metric allowed, in the metric's units
            (0.005: half a point of accuracy).
    """

    bytes: float = 0.02
    metric: float = 0.005


def find_regression(
    session: Session,
    *,
    job: Job,
    result: dict[str, Any],
    tolerance: RegressionTolerance,
) -> dict[str, Any] | None:
    """Compare scheduled ``job``'s ``result`` with its schedule's last run at the same target.

    Args:
        session: the database session (only read).
        job: the job about to succeed (its ``config`` and ``schedule_id`` are read).
        result: the job's result document (``search.finalize``).
        tolerance: what counts as worse.

    Returns:
        The regression document (module docstring), or None when nothing was compared.
    """
    if job.schedule_id is None:
        return None
    previous = _reference(session, job)
    if previous is None or previous.result is None:
        return None
    metric = str(job.config.get("metric", "accuracy"))
    higher = METRICS[metric].higher_is_better if metric in METRICS else True
    now, before = _figures(result), _figures(previous.result)
    split = "heldout" if now.heldout is not None and before.heldout is not None else "search"
    out: dict[str, Any] = {"compared_with": previous.id}
    out["bytes"] = _bytes_check(before.bytes, now.bytes, tolerance.bytes)
    m_now, m_before = (
        (now.heldout, before.heldout) if split == "heldout" else (now.metric, before.metric)
    )
    out["metric"] = {"name": metric, "split": split} | _metric_check(
        m_before, m_now, tolerance.metric, higher=higher
    )
    out["met_targets"] = {
        "previous": before.met,
        "current": now.met,
        "regressed": before.met and not now.met,
    }
    what = [k for k in ("bytes", "metric", "met_targets") if out[k]["regressed"]]
    out["what"] = what
    out["regressed"] = bool(what)
    out["summary"] = _summary(out)
    return out


@dataclass(frozen=True)
class _Figures:
    bytes: int | None
    metric: float | None
    heldout: float | None
    met: bool


def _figures(result: dict[str, Any]) -> _Figures:
    chosen = result.get("chosen") or {}
    held = chosen.get("heldout") or {}
    size = chosen.get("file_bytes")
    return _Figures(
        bytes=int(size) if size is not None else None,
        metric=chosen.get("metric"),
        heldout=held.get("metric"),
        met=bool(result.get("met_targets")),
    )


def _reference(session: Session, job: Job) -> Job | None:
    """The schedule's newest succeeded job before ``job`` with the same metric and targets."""
    rows = session.scalars(
        select(Job)
        .where(
            Job.schedule_id == job.schedule_id,
            Job.status == JobStatus.SUCCEEDED,
            Job.id != job.id,
            Job.finished_at.is_not(None),
        )
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(REFERENCE_WINDOW)
    )
    for row in rows:
        if _same_target(row.config, job.config):
            return row
    return None


def _same_target(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a.get("metric") == b.get("metric") and a.get("targets") == b.get("targets"))


def _bytes_check(before: int | None, now: int | None, tol: float) -> dict[str, Any]:
    out: dict[str, Any] = {"previous": before, "current": now, "tolerance": tol}
    if before is None or now is None or before <= 0:
        # a run with no file is caught by met_targets; nothing to compare here
        return out | {"change": None, "relative": None, "regressed": False}
    relative = (now - before) / before
    return out | {"change": now - before, "relative": relative, "regressed": relative > tol}


def _metric_check(
    before: float | None, now: float | None, tol: float, *, higher: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"previous": before, "current": now, "tolerance": tol}
    if before is None or now is None:
        return out | {"change": None, "regressed": False}
    change = now - before
    worse = -change if higher else change
    return out | {"change": change, "regressed": worse > tol}


def _summary(doc: dict[str, Any]) -> str:
    parts = []
    b, m, t = doc["bytes"], doc["metric"], doc["met_targets"]
    if b["regressed"]:
        parts.append(f"bytes up {b['relative']:.1%} ({b['previous']:,} -> {b['current']:,})")
    if m["regressed"]:
        direction = "down" if m["change"] < 0 else "up"
        parts.append(
            f"{m['name']} {direction} {abs(m['change']):.4g} "
            f"({m['previous']:.4g} -> {m['current']:.4g}, {m['split']} split)"
        )
    if t["regressed"]:
        parts.append("the targets were met last time and are missed now")
    return "; ".join(parts) or "no regression"
