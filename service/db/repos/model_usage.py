"""What the dashboard's model pages read about a model's use: its jobs, data and sensitivity.

Like the jobs list (:mod:`service.db.repos.job_listing`), none of these loads a job's
``result`` whole (every trial of a long search): a model's jobs are listed without it,
and the sensitivity table of its latest succeeded job is read as two JSON paths of
one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from service.db.models import Dataset, Job, JobStatus, Model, Team
from service.db.repos.datasets import DATASETS
from service.db.repos.job_listing import JobSummary
from service.db.session import end_reads

__all__ = [
    "Sensitivity",
    "count_jobs_by_model",
    "find_latest_sensitivity",
    "list_model_datasets",
    "list_model_jobs",
]


@dataclass(frozen=True)
class Sensitivity:
    """The per-layer sensitivity a job measured: ``{layer: {format: damage}}``, and how."""

    job_id: int
    method: str | None
    table: dict[str, dict[str, float]]


def count_jobs_by_model(session: Session, *, team: Team) -> dict[int, int]:
    """How many jobs each of ``team``'s models has (models without jobs are absent)."""
    rows = session.execute(
        select(Job.model_id, func.count()).where(Job.team_id == team.id).group_by(Job.model_id)
    ).all()
    end_reads(session)
    return {model_id: count for model_id, count in rows}


def list_model_jobs(
    session: Session, *, team: Team, model: Model, limit: int = 100
) -> list[JobSummary]:
    """``model``'s jobs (it must be ``team``'s), newest first, at most ``limit``."""
    rows = session.execute(
        select(Job, Job.result["met_targets"].as_boolean())
        .where(Job.team_id == team.id, Job.model_id == model.id)
        .options(defer(Job.result))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit)
    ).all()
    end_reads(session)
    return [JobSummary(job, model.name, model.version, met) for job, met in rows]


def list_model_datasets(session: Session, *, team: Team, model: Model) -> list[Dataset]:
    """``team``'s datasets validated for ``model`` at upload, newest first."""
    rows = DATASETS.list(session, team.id, Dataset.model_id == model.id)
    end_reads(session)
    return rows


def find_latest_sensitivity(session: Session, *, team: Team, model: Model) -> Sensitivity | None:
    """The sensitivity table of ``model``'s latest succeeded job that has one, or ``None``.

    Latest by finish time; one row is read, and of its result only ``sensitivity`` and
    ``sensitivity_method``.
    """
    table_path = Job.result["sensitivity"]
    row = session.execute(
        select(Job.id, table_path, Job.result["sensitivity_method"].as_string())
        .where(
            Job.team_id == team.id,
            Job.model_id == model.id,
            Job.status == JobStatus.SUCCEEDED,
            # as text: SQLite quotes a missing path's NULL as the JSON text 'null'
            table_path.as_string().is_not(None),
        )
        .order_by(Job.finished_at.desc(), Job.id.desc())
        .limit(1)
    ).first()
    end_reads(session)
    if row is None:
        return None
    job_id, table, method = row
    if not isinstance(table, dict) or not table:
        return None
    return Sensitivity(job_id=job_id, method=method, table=_damage_table(table))


def _damage_table(doc: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``doc`` with non-numeric entries dropped (a stored document is data, not trusted)."""
    out: dict[str, dict[str, float]] = {}
    for layer, cells in doc.items():
        if isinstance(cells, dict):
            out[str(layer)] = {
                str(fmt): float(v)
                for fmt, v in cells.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
    return out
