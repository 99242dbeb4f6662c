"""Schedules and their runs: a team's recurring jobs, and one row per fired due time.

Team-scoped reads as everywhere (another team's id reads as missing). Beat reads across
teams (:func:`list_enabled_schedules`) and claims a due time with :func:`claim_run`: the
unique (schedule, due time) constraint makes exactly one of several beat processes win,
the others get None. Writers own their transaction and commit before returning.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import ApiKey, Job, JobStatus, Schedule, ScheduleRun, Team
from service.db.repos._scoped import Scoped
from service.db.session import end_reads
from service.errors import ConflictError

__all__ = [
    "claim_run",
    "count_schedule_runs",
    "count_schedules",
    "create_schedule",
    "delete_schedule",
    "find_last_succeeded_job",
    "find_run",
    "get_schedule",
    "list_enabled_schedules",
    "list_schedule_runs",
    "list_schedules",
    "record_run",
    "update_schedule",
]

SCHEDULES = Scoped(
    Schedule,
    owner="team_id",
    key="id",
    order=(Schedule.created_at.desc(), Schedule.id.desc()),
    missing=lambda _, i: f"no schedule with id {i}; list yours with GET /v1/schedules",
)
RUNS = Scoped(
    ScheduleRun,
    owner="schedule_id",
    key="id",
    order=(ScheduleRun.due_at.desc(), ScheduleRun.id.desc()),
    missing=lambda s, i: f"no run {i} of schedule {s}",
)
EDITABLE = frozenset(
    {"name", "cron", "timezone", "model_name", "model_alias", "dataset_id", "config", "enabled"}
)


def _taken(name: str) -> ConflictError:
    return ConflictError(
        f"a schedule named {name[:255]!r} exists already; choose another name, or change "
        "that one with PATCH /v1/schedules/{id}"
    )


def create_schedule(
    session: Session, *, team: Team, created_by: ApiKey | None = None, **fields: Any
) -> Schedule:
    """Record a schedule of ``team`` with ``fields`` (:data:`EDITABLE` names; committed).

    Raises:
        ConflictError: the team has a schedule of that name.
    """
    assert set(fields) <= EDITABLE, set(fields) - EDITABLE
    now = utcnow()
    row = Schedule(team_id=team.id, created_at=now, updated_at=now, **fields)
    row.created_by_key_id = None if created_by is None else created_by.id
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise _taken(fields["name"]) from None
    return row


def get_schedule(session: Session, *, team: Team, schedule_id: int) -> Schedule:
    """Schedule ``schedule_id`` of ``team``; :class:`NotFoundError` if not ``team``'s."""
    row = SCHEDULES.get(session, team.id, schedule_id)
    end_reads(session)
    return row


def list_schedules(
    session: Session, *, team: Team, skip: int = 0, limit: int = 100
) -> list[Schedule]:
    """``team``'s schedules, newest first, paginated."""
    rows = SCHEDULES.list(session, team.id, skip=skip, limit=limit)
    end_reads(session)
    return rows


def count_schedules(session: Session, *, team: Team) -> int:
    """How many schedules ``team`` has."""
    count = SCHEDULES.count(session, team.id)
    end_reads(session)
    return count


def update_schedule(session: Session, *, schedule: Schedule, changes: dict[str, Any]) -> Schedule:
    """Apply ``changes`` (:data:`EDITABLE` names) to ``schedule``; ``updated_at`` now.

    ``updated_at`` is the start of the catch-up window (:mod:`service.domain.cron`):
    a changed schedule never fires for a due time before the change.

    Raises:
        ConflictError: a new name is taken by another of the team's schedules.
    """
    assert set(changes) <= EDITABLE, set(changes) - EDITABLE
    for name, value in changes.items():
        setattr(schedule, name, value)
    schedule.updated_at = utcnow()
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise _taken(str(changes.get("name", schedule.name))) from None
    return schedule


def delete_schedule(session: Session, *, schedule: Schedule) -> None:
    """Delete ``schedule`` and its runs; its jobs stay, with ``schedule_id`` NULL."""
    session.delete(schedule)
    session.commit()


def list_enabled_schedules(session: Session) -> list[Schedule]:
    """Every team's enabled schedules, by id (for beat)."""
    rows = list(session.scalars(select(Schedule).where(Schedule.enabled).order_by(Schedule.id)))
    end_reads(session)
    return rows


def find_run(session: Session, *, schedule_id: int, due_at: datetime) -> ScheduleRun | None:
    """The run of ``schedule_id`` for ``due_at``, or None if nobody fired it yet."""
    query = select(ScheduleRun).where(
        ScheduleRun.schedule_id == schedule_id, ScheduleRun.due_at == due_at
    )
    return session.scalars(query).one_or_none()


def claim_run(session: Session, *, schedule_id: int, due_at: datetime) -> ScheduleRun | None:
    """Insert the run of ``schedule_id`` for ``due_at`` (committed); None if one exists.

    Of several processes claiming the same due time exactly one gets the row: the
    others' inserts hit the unique (schedule, due time) constraint.
    """
    end_reads(session)
    row = ScheduleRun(schedule_id=schedule_id, due_at=due_at)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return row


def record_run(
    session: Session,
    *,
    run: ScheduleRun,
    job_id: int | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    """Store what firing ``run`` did: the job it submitted, or why it submitted none."""
    run.job_id, run.error_code, run.error_message = job_id, error_code, error_message
    session.commit()


def list_schedule_runs(
    session: Session, *, schedule: Schedule, skip: int = 0, limit: int = 100
) -> list[tuple[ScheduleRun, JobStatus | None]]:
    """``schedule``'s runs, latest due time first, each with its job's status (if any)."""
    if not skip >= 0:
        return []
    query = (
        select(ScheduleRun, Job.status)
        .outerjoin(Job, Job.id == ScheduleRun.job_id)
        .where(ScheduleRun.schedule_id == schedule.id)
        .order_by(*RUNS.order)
        .offset(skip)
        .limit(limit)
    )
    rows: list[tuple[ScheduleRun, JobStatus | None]] = [(r, st) for r, st in session.execute(query)]
    end_reads(session)
    return rows


def latest_schedule_runs(
    session: Session, *, schedules: list[Schedule], per: int
) -> dict[int, list[tuple[ScheduleRun, Job | None]]]:
    """Each schedule's ``per`` latest runs (latest due time first) with their jobs, by
    schedule id, in two queries whatever the number of schedules."""
    runs = RUNS.latest(session, [s.id for s in schedules], per)
    job_ids = {r.job_id for rows in runs.values() for r in rows if r.job_id is not None}
    query = select(Job).where(Job.id.in_(job_ids))
    jobs = {j.id: j for j in session.scalars(query)} if job_ids else {}
    latest = {
        schedule_id: [(r, jobs.get(r.job_id) if r.job_id is not None else None) for r in rows]
        for schedule_id, rows in runs.items()
    }
    end_reads(session)
    return latest


def count_schedule_runs(session: Session, *, schedule: Schedule) -> int:
    """How many runs ``schedule`` has."""
    count = RUNS.count(session, schedule.id)
    end_reads(session)
    return count


def find_last_succeeded_job(session: Session, *, schedule_id: int) -> int | None:
    """The id of ``schedule_id``'s most recent succeeded job, or None."""
    query = (
        select(Job.id)
        .where(Job.schedule_id == schedule_id, Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(1)
    )
    return session.scalar(query)
