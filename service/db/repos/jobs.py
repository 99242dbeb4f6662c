"""Jobs: a team's searches, their spec, and the moves of their state machine.

Reads are team-scoped (:func:`get_job`, :func:`find_job`, :func:`list_jobs`,
:func:`count_jobs`) except :func:`find_job_by_id`, for workers, which act for every
team. The team-scoped reads end their read transaction before returning (rows stay
readable, ``expire_on_commit=False``): the API validates a route's answer in another
threadpool thread, and a request holding a pooled connection while it waits for a
thread, when every thread waits for a connection, stalls all requests until the
pool's checkout timeout (50 status clients did). State changes go through
:mod:`service.db.repos.job_states`' one table; each function here owns its transaction
and commits before returning, so callers enqueue work only for committed rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from service.db.base import utcnow
from service.db.models import ApiKey, Dataset, Job, JobStatus, Model, Team
from service.db.repos._scoped import Scoped
from service.db.repos.artifacts import ArtifactFile, put_artifacts
from service.db.repos.job_states import ACTIVE, apply_transition
from service.db.session import end_reads
from service.errors import ConflictError

if TYPE_CHECKING:  # the search (and torch) load only where a spec is read back
    from search import JobSpec

__all__ = [
    "cancel_job",
    "claim_job",
    "count_active_jobs",
    "count_jobs",
    "create_job",
    "fail_job",
    "find_job",
    "find_job_by_id",
    "finish_job",
    "get_job",
    "list_jobs",
    "record_progress",
    "record_step",
    "start_job",
    "study_name",
]

JOBS = Scoped(
    Job,
    owner="team_id",
    key="id",
    order=(Job.created_at.desc(), Job.id.desc()),
    missing=lambda _, job_id: f"no job with id {job_id}; list yours with GET /v1/jobs",
)


def study_name(job_id: int) -> str:
    """The name of job ``job_id``'s Optuna study: ``job-<id>``."""
    return f"job-{job_id}"


def create_job(
    session: Session,
    *,
    team: Team,
    model: Model,
    dataset: Dataset,
    spec: JobSpec,
    created_by: ApiKey | None = None,
    guard: Callable[[Session], None] | None = None,
    schedule_id: int | None = None,
    warm_start_job_id: int | None = None,
) -> Job:
    """Record a queued job of ``team`` storing ``spec`` as is (committed: enqueue it next).

    ``guard`` runs first in the inserting transaction (a quota check that counts the
    team's jobs: :func:`service.domain.quotas.active_jobs_guard`); what it raises
    leaves no row. ``schedule_id`` is the schedule that submits it (None: by hand),
    ``warm_start_job_id`` an earlier succeeded job whose results seed its search.
    """
    end_reads(session)
    if guard is not None:
        try:
            guard(session)
        except BaseException:
            session.rollback()
            raise
    row = Job(
        team_id=team.id,
        model_id=model.id,
        dataset_id=dataset.id,
        status=JobStatus.QUEUED,
        config=spec.to_json(),
        trials_total=spec.trials,
        trials_done=0,
        created_by=created_by,
        schedule_id=schedule_id,
        warm_start_job_id=warm_start_job_id,
    )
    session.add(row)
    session.commit()
    row.study_name = study_name(row.id)
    session.commit()
    return row


def find_job(session: Session, *, team: Team, job_id: int) -> Job | None:
    """Job ``job_id`` if it belongs to ``team``, else ``None`` (another team's too)."""
    return JOBS.find(session, team.id, job_id)


def get_job(session: Session, *, team: Team, job_id: int) -> Job:
    """Job ``job_id`` of ``team``; :class:`NotFoundError` if it is not ``team``'s."""
    job = JOBS.get(session, team.id, job_id)
    end_reads(session)
    return job


def find_job_by_id(session: Session, job_id: int) -> Job | None:
    """Job ``job_id`` whatever its team (for workers), read afresh from the database."""
    return session.get(Job, job_id, populate_existing=True)


def list_jobs(
    session: Session,
    *,
    team: Team,
    status: JobStatus | None = None,
    skip: int = 0,
    limit: int = 100,
) -> list[Job]:
    """``team``'s jobs (in ``status`` if given), newest first, paginated.

    The ``result`` document (every trial of a finished job) is not loaded: a list shows
    none of it, and reading it made a page of 50 jobs take 80 ms instead of 6.
    """
    where = () if status is None else (Job.status == status,)
    jobs = JOBS.list(session, team.id, *where, skip=skip, limit=limit, options=(defer(Job.result),))
    end_reads(session)
    return jobs


def count_jobs(session: Session, *, team: Team, status: JobStatus | None = None) -> int:
    """How many jobs ``team`` has (in ``status`` if given)."""
    where = () if status is None else (Job.status == status,)
    count = JOBS.count(session, team.id, *where)
    end_reads(session)
    return count


def count_active_jobs(session: Session, *, team: Team) -> int:
    """How many of ``team``'s jobs are queued, preparing or running."""
    return JOBS.count(session, team.id, Job.status.in_(ACTIVE))


def claim_job(session: Session, *, job_id: int, progress: dict[str, Any]) -> bool:
    """Take queued job ``job_id`` for preparing (its first heartbeat now); False if not queued.

    Of two deliveries of the same prepare message exactly one gets True.
    """
    end_reads(session)
    done = apply_transition(
        session, job_id=job_id, move="claim", progress=progress, heartbeat_at=utcnow()
    )
    session.commit()
    return done


def record_step(session: Session, *, job_id: int, progress: dict[str, Any]) -> JobStatus | None:
    """Store a preparing job's ``progress``; return its state now (``None``: the job is gone).

    Any state but ``preparing`` (cancelled, requeued) tells the caller to stop.
    """
    end_reads(session)
    apply_transition(session, job_id=job_id, move="step", progress=progress)
    session.commit()
    return session.scalar(select(Job.status).where(Job.id == job_id))


def start_job(
    session: Session, *, job_id: int, baseline: dict[str, Any], progress: dict[str, Any]
) -> bool:
    """Mark preparing job ``job_id`` running with its float ``baseline``; False if not preparing."""
    end_reads(session)
    done = apply_transition(
        session, job_id=job_id, move="start", baseline=baseline, progress=progress
    )
    session.commit()
    return done


def record_progress(
    session: Session,
    *,
    job_id: int,
    trials_done: int,
    best: dict[str, Any] | None,
    progress: dict[str, Any],
) -> JobStatus | None:
    """Store a running job's progress; return its state now (``None``: the job is gone).

    Several trial runners report; a report older than one already stored (fewer trials
    done) changes nothing, so ``trials_done`` never goes back, and neither does a report
    once the finalize is claimed (the phase stays ``finalizing``).
    """
    end_reads(session)
    apply_transition(
        session,
        job_id=job_id,
        move="progress",
        where=(Job.trials_done <= trials_done, Job.finalize_claimed_at.is_(None)),
        trials_done=trials_done,
        best=best,
        progress=progress,
    )
    session.commit()
    return session.scalar(select(Job.status).where(Job.id == job_id))


def finish_job(
    session: Session,
    *,
    job_id: int,
    result: dict[str, Any],
    trials_done: int,
    artifacts: list[ArtifactFile],
    regression: dict[str, Any] | None = None,
) -> bool:
    """Mark a running job succeeded with its result and ``(name, key, size, sha256)`` files.

    ``regression`` (a scheduled job's comparison with its last run) is stored with it.

    Idempotent: artifacts already recorded (a re-run finalize) are replaced. Returns
    False, changing nothing, when the job is no longer running (cancelled meanwhile).
    """
    end_reads(session)
    done = apply_transition(
        session,
        job_id=job_id,
        move="finish",
        result=result,
        trials_done=trials_done,
        regression=regression,
    )
    if not done:
        session.rollback()
        return False
    put_artifacts(session, job_id=job_id, files=artifacts)
    session.commit()
    return True


def fail_job(session: Session, *, job_id: int, code: str, message: str) -> bool:
    """Mark an active job failed with an error ``code`` and ``message``; False if not active."""
    end_reads(session)
    done = apply_transition(
        session, job_id=job_id, move="fail", error_code=code, error_message=message
    )
    session.commit()
    return done


def cancel_job(session: Session, *, job: Job) -> Job:
    """Cancel ``job`` if it is queued, preparing or running (idempotent on a cancelled job).

    Workers see the new state at their next preparation step or trial, and stop.

    Raises:
        ConflictError: the job has already succeeded or failed.
    """
    end_reads(session)
    done = apply_transition(session, job_id=job.id, move="cancel")
    session.commit()
    session.refresh(job)
    if not done and job.status != JobStatus.CANCELLED:
        raise ConflictError(f"job {job.id} has already {job.status.value}; it cannot be cancelled")
    return job
