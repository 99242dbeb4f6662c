"""A job's state machine: one table of the moves a job may make, and what each sets.

::

    queued ──claim──▶ preparing ──start──▶ running ──finish──▶ succeeded
      │  ▲              │  │  ▲               │  ▲
      │  └──requeue─────┘  │  └─ step         │  └─ progress
      ├──fail──────────────┼───────────────────┴──fail──▶ failed
      └──cancel────────────┴──────────────────────cancel─▶ cancelled

A worker's prepare task claims a queued job (so a duplicate delivery of the same message
finds it taken and backs off), reports its steps, and starts it with the float baseline.
The recovery sweep requeues a preparing job whose worker went silent, and sends the
prepare again. Succeeded, failed and cancelled are final: no move leaves them. Each move
is one ``UPDATE ... WHERE id = :id AND status IN (:sources)``, so of two racing writers
(a worker finishing, a user cancelling) exactly one wins and the other sees ``False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, update
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Job, JobStatus

__all__ = ["ACTIVE", "FINAL", "TRANSITIONS", "Transition", "allowed", "apply_transition"]

ACTIVE = (JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.RUNNING)
"""Job states that can still change."""
FINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
"""Job states no move leaves."""


@dataclass(frozen=True)
class Transition:
    """One move of the state machine.

    Attributes:
        sources: the states the move may start from.
        target: the state it ends in.
        sets: the columns the caller gives values for (exactly these).
        starts: sets ``started_at`` to now, unless an earlier start set it.
        ends: sets ``finished_at`` to now.
    """

    sources: tuple[JobStatus, ...]
    target: JobStatus
    sets: frozenset[str] = frozenset()
    starts: bool = False
    ends: bool = False


TRANSITIONS: dict[str, Transition] = {
    "claim": Transition(
        (JobStatus.QUEUED,), JobStatus.PREPARING, frozenset({"progress", "heartbeat_at"})
    ),
    "step": Transition((JobStatus.PREPARING,), JobStatus.PREPARING, frozenset({"progress"})),
    "requeue": Transition(
        (JobStatus.PREPARING,), JobStatus.QUEUED, frozenset({"progress", "heartbeat_at"})
    ),
    "start": Transition(
        (JobStatus.PREPARING,), JobStatus.RUNNING, frozenset({"baseline", "progress"}), starts=True
    ),
    "progress": Transition(
        (JobStatus.RUNNING,), JobStatus.RUNNING, frozenset({"trials_done", "best", "progress"})
    ),
    "finish": Transition(
        (JobStatus.RUNNING,),
        JobStatus.SUCCEEDED,
        frozenset({"result", "trials_done", "regression"}),
        ends=True,
    ),
    "fail": Transition(
        ACTIVE, JobStatus.FAILED, frozenset({"error_code", "error_message"}), ends=True
    ),
    "cancel": Transition(ACTIVE, JobStatus.CANCELLED, ends=True),
}
"""Every move a job may make, by name."""


def allowed(move: str, status: JobStatus) -> bool:
    """Whether a job in ``status`` may make ``move``."""
    return status in TRANSITIONS[move].sources


def apply_transition(
    session: Session,
    *,
    job_id: int,
    move: str,
    where: tuple[ColumnElement[bool], ...] = (),
    **values: Any,
) -> bool:
    """Make ``move`` on job ``job_id`` if its state allows it; True if it did.

    One guarded ``UPDATE`` in the caller's transaction (nothing is committed here).

    Args:
        session: the database session.
        job_id: the job.
        move: a key of :data:`TRANSITIONS`.
        where: further conditions the row must meet (e.g. progress never goes back).
        **values: the columns the move sets (its ``sets``, exactly).
    """
    t = TRANSITIONS[move]
    assert set(values) == t.sets, f"{move} sets {sorted(t.sets)}, got {sorted(values)}"
    stamps: dict[str, Any] = {}
    if t.starts:
        stamps["started_at"] = func.coalesce(Job.started_at, utcnow())
    if t.ends:
        stamps["finished_at"] = utcnow()
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(t.sources), *where)
        .values(status=t.target, **values, **stamps)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]
