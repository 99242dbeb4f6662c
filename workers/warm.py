"""Warm start of a job from an earlier one (``jobs.warm_start_job_id``), for prepare.

A nightly job is compressed to the same target as its schedule's last succeeded job;
:func:`earlier_job` reads, in prepare's session, what the warm start needs of that job's
row, and :func:`warm_start` reads its study's plans (:func:`search.load_warm_start`),
outside the session. Any reason the earlier job cannot serve (deleted, not succeeded,
another team's, no chosen plan, its study gone) starts the job cold, never fails it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from search import WarmStart, load_warm_start
from service.db import repos
from service.db.models import Job, JobStatus
from workers.context import WorkerContext

__all__ = ["earlier_job", "warm_start"]

log = logging.getLogger("workers.warm")


def earlier_job(session: Session, job: Job) -> dict[str, Any] | None:
    """What a warm start needs of ``job.warm_start_job_id`` (None: the job starts cold).

    Only a succeeded job of the same team with a chosen plan is used; anything else
    (deleted, failed, another team's, no plan) starts the job cold, as if unset.
    """
    if job.warm_start_job_id is None:
        return None
    earlier = session.get(Job, job.warm_start_job_id)
    if earlier is None or earlier.status != JobStatus.SUCCEEDED or earlier.team_id != job.team_id:
        log.info("job %s: warm start job %s unusable; cold", job.id, job.warm_start_job_id)
        return None
    chosen = (earlier.result or {}).get("chosen")
    if not chosen or chosen.get("trial") is None:
        return None
    return {
        "from_job": earlier.id,
        "study": earlier.study_name or repos.study_name(earlier.id),
        "chosen_trial": int(chosen["trial"]),
        "front": [int(n) for n in (earlier.result or {}).get("front", [])],
        "chosen_bytes": chosen.get("payload_bytes"),
    }


def warm_start(ctx: WorkerContext, job_id: int, earlier: dict[str, Any] | None) -> WarmStart | None:
    """The earlier job's plans read from its study (None, and a cold start, if it is gone)."""
    if earlier is None:
        return None
    try:
        return load_warm_start(
            ctx.settings.study_url,
            earlier["study"],
            from_job=earlier["from_job"],
            chosen_trial=earlier["chosen_trial"],
            front=earlier["front"],
            chosen_bytes=earlier["chosen_bytes"],
        )
    except KeyError:
        log.info("job %s: study of warm start job %s is gone; cold", job_id, earlier["from_job"])
        return None
