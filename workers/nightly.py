"""What a worker does after a scheduled job succeeds: the schedule's retention policy.

The job has succeeded (committed) by the time this runs; nothing here can change that.
A failure to prune is logged and left to the schedule's next success.
"""

from __future__ import annotations

import logging

from service.db import repos
from service.domain.retention import prune_schedule
from workers.context import WorkerContext

__all__ = ["after_success"]

log = logging.getLogger("workers.nightly")


def after_success(ctx: WorkerContext, job_id: int) -> None:
    """Prune the schedule of succeeded job ``job_id`` (if a schedule submitted it)."""
    try:
        with ctx.sessions() as session:
            job = repos.find_job_by_id(session, job_id)
            if job is None or job.schedule_id is None:
                return
            prune_schedule(
                session,
                store=ctx.blobs,
                study_url=ctx.settings.study_url,
                schedule_id=job.schedule_id,
                keep=ctx.settings.schedule_keep_runs,
            )
    except Exception:
        log.exception("job %s: pruning its schedule failed; the next success retries", job_id)
