"""Job liveness: heartbeats of the tasks working on a job, the finalize claim, stale jobs.

A task working on a job (prepare, a trial runner, finalize) writes ``jobs.heartbeat_at``
every few seconds. An active job whose heartbeat is older than a grace period has no
live task: its worker died (SIGKILL, OOM, a lost machine) or its messages were lost
(a broker restarted empty). The recovery sweep finds such jobs with :func:`stale_jobs`
and takes each with :func:`claim_stale` -- a compare-and-set on the heartbeat, so of
several sweeping workers exactly one resumes a job; a preparing job goes back to queued
in the same move, so that the prepare sent again can claim it.

Times are the workers' wall clocks in UTC; the grace period (tens of seconds by
default) absorbs the skew of NTP-synchronised machines.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Job, JobStatus
from service.db.repos.job_states import ACTIVE, apply_transition
from service.db.session import end_reads
from service.progress import progress_doc

__all__ = ["beat", "claim_finalize", "claim_stale", "stale_jobs"]


def beat(session: Session, *, job_id: int) -> JobStatus | None:
    """Write job ``job_id``'s heartbeat if it is active; return its state (None: gone)."""
    end_reads(session)
    session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE)).values(heartbeat_at=utcnow())
    )
    session.commit()
    return session.scalar(select(Job.status).where(Job.id == job_id))


def claim_finalize(session: Session, *, job_id: int) -> bool:
    """Claim the finalize of running job ``job_id``; True for the one caller that gets it.

    The job's phase becomes ``finalizing``.
    """
    end_reads(session)
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.finalize_claimed_at.is_(None))
        .values(
            finalize_claimed_at=utcnow(),
            heartbeat_at=utcnow(),
            progress=progress_doc("finalizing"),
        )
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    return bool(done)


def stale_jobs(session: Session, *, grace_s: float, limit: int = 100) -> list[Job]:
    """Active jobs whose heartbeat is older than ``grace_s`` seconds, oldest first.

    Queued jobs that no task has touched yet (``heartbeat_at`` NULL) are not stale:
    their message waits in the broker.
    """
    cutoff = utcnow() - timedelta(seconds=grace_s)
    query = (
        select(Job)
        .where(Job.status.in_(ACTIVE), Job.heartbeat_at.is_not(None), Job.heartbeat_at < cutoff)
        .order_by(Job.heartbeat_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def claim_stale(session: Session, *, job_id: int, seen: datetime) -> bool:
    """Take stale job ``job_id`` for resuming if its heartbeat is still ``seen``.

    Moves the heartbeat to now, so the job is not stale again until the tasks the
    claimant sends have had a grace period to start beating. A preparing job is moved
    back to queued (its progress cleared): nobody prepares it any more, and the prepare
    the claimant sends claims it like a new one.
    """
    end_reads(session)
    same = Job.heartbeat_at == seen
    done = apply_transition(
        session, job_id=job_id, move="requeue", where=(same,), progress=None, heartbeat_at=utcnow()
    ) or bool(
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(ACTIVE), same)
            .values(heartbeat_at=utcnow())
        ).rowcount  # type: ignore[attr-defined]
    )
    session.commit()
    return done
