"""The team's jobs as the dashboard lists them: filtered, paginated, one query per page.

A job row's ``result`` holds every trial of a finished job (megabytes for a long
search); a list of fifty jobs must not read fifty of those. :func:`list_job_summaries`
reads the columns a list shows, the model's name and version (a join, not a query per
row), and from ``result`` only its ``met_targets`` flag (a JSON path the database
extracts). Filters use the indexes ``(team_id, status)``, ``(team_id, model_id,
created_at)`` and ``(team_id, created_by_key_id, created_at)``.

A page is chosen first by job id alone (a subquery that orders, skips and limits), and
only its rows are then read whole. On SQLite a row's later columns (``created_at``,
``progress``, ``created_by_key_id``) sit behind ``result``'s overflow pages, so reading
the rows a deep page skips (``skip=5000``) meant walking 5,000 results' pages: 124 ms
at 10,000 jobs with 139 kB results, against 5 ms now (``bench/dashboard_jobs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, defer

from service.db.models import Job, JobStatus, Model, Team
from service.db.repos._scoped import MAX_ID
from service.db.session import end_reads

__all__ = [
    "JobFilter",
    "JobSummary",
    "count_job_summaries",
    "list_job_summaries",
    "list_model_names",
]


@dataclass(frozen=True)
class JobFilter:
    """Which of a team's jobs to list; ``None`` fields do not filter.

    Attributes:
        status: one state.
        model: a model name (every version of it).
        key_id: the API key that submitted the jobs.
        ids: exactly these job ids (the live refresh of rows on screen).
    """

    status: JobStatus | None = None
    model: str | None = None
    key_id: int | None = None
    ids: tuple[int, ...] | None = None

    def where(self) -> list[ColumnElement[bool]]:
        """The filter as SQL conditions on ``Job`` (and ``Model``, which is joined)."""
        out: list[ColumnElement[bool]] = []
        if self.status is not None:
            out.append(Job.status == self.status)
        if self.model is not None:
            out.append(Model.name == self.model)
        if self.key_id is not None:
            out.append(Job.created_by_key_id == self.key_id)
        if self.ids is not None:
            out.append(Job.id.in_(self.ids))
        return out


@dataclass(frozen=True)
class JobSummary:
    """One line of the jobs list: the job (``result`` not loaded) and what it needs beside."""

    job: Job
    model_name: str
    model_version: int
    met_targets: bool | None
    """Whether a finished job's chosen plan met its targets; None while it runs."""

    @property
    def ratio(self) -> float | None:
        """Float bytes over the best plan's bytes so far, once both are known."""
        base, best = self.job.baseline, self.job.best
        if not base or not best or not best.get("bytes"):
            return None
        ratio: float = base["bytes"] / best["bytes"]
        return ratio

    @property
    def best(self) -> dict[str, Any] | None:
        """The best plan so far (``metric``, ``bytes``, ``plan``...), or None."""
        return self.job.best


def _query(team: Team, where: list[ColumnElement[bool]]) -> Select[Any]:
    return (
        select(Job, Model.name, Model.version, Job.result["met_targets"].as_boolean())
        .join(Model, Model.id == Job.model_id)
        .where(Job.team_id == team.id, *where)
        .options(defer(Job.result))
    )


def list_job_summaries(
    session: Session, *, team: Team, where: JobFilter, skip: int = 0, limit: int = 50
) -> list[JobSummary]:
    """``team``'s jobs matching ``where``, newest first, ``limit`` after ``skip``."""
    if not 0 <= skip <= MAX_ID:
        return []
    order = (Job.created_at.desc(), Job.id.desc())
    page = select(Job.id).where(Job.team_id == team.id, *where.where())
    if where.model is not None:
        page = page.join(Model, Model.id == Job.model_id)
    page = page.order_by(*order).offset(skip).limit(limit)
    query = _query(team, [Job.id.in_(page.scalar_subquery())]).order_by(*order)
    rows = session.execute(query).all()
    end_reads(session)
    return [JobSummary(job, name, version, met) for job, name, version, met in rows]


def count_job_summaries(session: Session, *, team: Team, where: JobFilter) -> int:
    """How many of ``team``'s jobs match ``where``."""
    conditions = where.where()
    query = select(func.count()).select_from(Job).where(Job.team_id == team.id, *conditions)
    if where.model is not None:
        query = query.join(Model, Model.id == Job.model_id)
    count = session.scalar(query) or 0
    end_reads(session)
    return count


def list_model_names(session: Session, *, team: Team) -> list[str]:
    """The names of ``team``'s models, each once, in alphabetical order."""
    names = list(
        session.scalars(
            select(Model.name).where(Model.team_id == team.id).distinct().order_by(Model.name)
        )
    )
    end_reads(session)
    return names
