"""The Celery tasks: thin, named, given ids only; the work is in :mod:`workers.run`.

``mpq.run_job`` prepares a job and sends its ``mpq.run_trials`` runners; the runner
that spends the budget sends ``mpq.finalize``; ``mpq.deliver_webhook`` makes one attempt
at a webhook delivery (:mod:`workers.webhooks`). All are acknowledged late (a pool
process lost mid-task leaves its message to be redelivered) and retried only on
transient errors: the database or broker briefly unreachable. Everything
deterministic ends in the job's row instead (failed, with a code).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
from celery import Task
from sqlalchemy.exc import DBAPIError, OperationalError

from service.db import repos
from service.db.session import make_engine, session_factory
from service.errors import InternalError
from service.queue import DELIVER_WEBHOOK, FINALIZE, RUN_JOB, RUN_TRIALS
from service.settings import get_settings
from workers import run, webhooks
from workers.app import app, send
from workers.context import WorkerContext

__all__ = ["deliver_webhook", "finalize", "run_job", "run_trials"]

log = logging.getLogger("workers.tasks")

TRANSIENT = (OperationalError, DBAPIError, ConnectionError, TimeoutError)
"""Errors worth retrying: the same task may well succeed a moment later."""

MAX_RETRIES = 5

_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": TRANSIENT,
    "max_retries": MAX_RETRIES,
    "retry_backoff": True,
    "retry_jitter": False,
}


@functools.lru_cache(maxsize=1)
def context() -> WorkerContext:
    """This worker process's context, made on first use (after any fork)."""
    settings = get_settings()
    sessions = session_factory(make_engine(settings.database_url))
    return WorkerContext(settings, sessions, send, trust_uploads=settings.trust_uploads)


def _guarded(job_id: int, step: Callable[[WorkerContext], str]) -> str:
    # Workers share the machine's cores: one thread each, parallelism comes from processes.
    torch.set_num_threads(1)
    ctx = context()
    try:
        return step(ctx)
    except TRANSIENT:
        raise
    except Exception as exc:
        # A bug, not the user's input: fail the job rather than redeliver it forever.
        log.exception("job %s failed with an unexpected %s", job_id, type(exc).__name__)
        with ctx.sessions() as session:
            repos.fail_job(
                session,
                job_id=job_id,
                code=InternalError.code,
                message=f"internal error ({type(exc).__name__}); it has been logged",
            )
        webhooks.notify(ctx.sessions, ctx.send, job_id)
        return "failed"


@app.task(name=RUN_JOB, **_OPTIONS)  # type: ignore[untyped-decorator]
def run_job(self: Task, job_id: int) -> str:
    """Prepare job ``job_id`` and send its trial runners; return the state it is in."""
    return _guarded(int(job_id), lambda ctx: run.prepare(ctx, int(job_id)))


@app.task(name=RUN_TRIALS, **_OPTIONS)  # type: ignore[untyped-decorator]
def run_trials(self: Task, job_id: int, runner: int) -> str:
    """Run trials of job ``job_id`` as runner ``runner``; finalize if it spends the budget."""
    return _guarded(int(job_id), lambda ctx: run.run_runner(ctx, int(job_id), int(runner)))


@app.task(name=FINALIZE, **_OPTIONS)  # type: ignore[untyped-decorator]
def finalize(self: Task, job_id: int) -> str:
    """Finalize job ``job_id``: finalists, artifacts, succeeded."""
    return _guarded(int(job_id), lambda ctx: run.finalize_job(ctx, int(job_id)))


def _later(delivery_id: int, delay_s: float) -> None:
    app.send_task(DELIVER_WEBHOOK, args=[delivery_id], countdown=delay_s)


@app.task(name=DELIVER_WEBHOOK, **_OPTIONS)  # type: ignore[untyped-decorator]
def deliver_webhook(self: Task, delivery_id: int) -> str:
    """One attempt at webhook delivery ``delivery_id`` (:func:`workers.webhooks.deliver`)."""
    ctx = context()
    return webhooks.deliver(ctx.sessions, ctx.settings, int(delivery_id), later=_later)
