"""The Celery tasks: thin, named, given ids only; the work is in :mod:`workers.run`.

``mpq.run_job`` is acknowledged late (a worker lost mid-job leaves the message to be
redelivered) and retried only on transient errors: the database or broker briefly
unreachable. Everything deterministic ends in the job's row instead (failed, with a code).
"""

from __future__ import annotations

import functools
import logging
import os

import torch
from celery import Task
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.db import crud
from service.db.session import make_engine, session_factory
from service.settings import get_settings
from workers import run
from workers.app import app

__all__ = ["run_job"]

log = logging.getLogger("workers.tasks")

TRANSIENT = (OperationalError, DBAPIError, ConnectionError, TimeoutError)
"""Errors worth retrying: the same task may well succeed a moment later."""

MAX_RETRIES = 5


@functools.lru_cache(maxsize=1)
def _sessions() -> sessionmaker[Session]:
    # One engine per worker process, made on first use (after any fork).
    return session_factory(make_engine(get_settings().database_url))


@app.task(  # type: ignore[untyped-decorator]
    name="mpq.run_job",
    bind=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    max_retries=MAX_RETRIES,
    retry_backoff=True,
    retry_jitter=False,
)
def run_job(self: Task, job_id: int) -> str:
    """Run the search of job ``job_id``; return the state it ended in."""
    # Workers share the machine's cores: one thread each, parallelism comes from processes.
    torch.set_num_threads(1)
    trust = os.environ.get("MPQ_TRUST_UPLOADS") == "1"
    try:
        return run.run_job(
            int(job_id), settings=get_settings(), sessions=_sessions(), trust_uploads=trust
        )
    except TRANSIENT:
        raise
    except Exception as exc:
        # A bug, not the user's input: fail the job rather than redeliver it forever.
        log.exception("job %s failed with an unexpected %s", job_id, type(exc).__name__)
        with _sessions()() as session:
            crud.fail_job(
                session, job_id=int(job_id), code="internal",
                message=f"internal error ({type(exc).__name__}); it has been logged",
            )  # fmt: skip
        return "failed"
