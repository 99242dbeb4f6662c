"""The job queue: a Celery app configured from :class:`~service.settings.Settings`.

The API enqueues by task *name* through :func:`make_celery` (``send_task("mpq.run_job",
args=[job_id])``) and never imports ``workers/``; the workers build their app on the
same function and register the tasks. One configuration, two sides.

Embedded default: kombu's SQLAlchemy transport on a SQLite file (``sqla+sqlite:///``),
no server needed. kombu 5.7.0 crashes the worker when ``polling_interval`` is given in
``broker_transport_options``, so the interval is set on the transport class instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy.engine import make_url

from service.private_files import make_private_dir, make_private_file
from service.settings import Settings

__all__ = ["DELIVER_WEBHOOK", "FINALIZE", "RUN_JOB", "RUN_TRIALS", "Send", "make_celery", "sender"]

RUN_JOB = "mpq.run_job"
"""Prepare a job (sensitivity, seeded study, baseline), then send its trial runners."""
RUN_TRIALS = "mpq.run_trials"
"""One of a job's trial runners: ``args=[job_id, runner_index]``."""
FINALIZE = "mpq.finalize"
"""Finalists, integer-only check and artifacts of a job whose budget is spent."""
DELIVER_WEBHOOK = "mpq.deliver_webhook"
"""One attempt at a webhook delivery: ``args=[delivery_id]``."""
# Publishing to an unreachable broker gives up after about this long (seconds).
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


def make_celery(settings: Settings, **conf: Any) -> Celery:
    """A Celery app on ``settings.broker_url``: JSON only, late acks, prefetch 1.

    Args:
        settings: the service settings (``broker_url``, ``broker_polling_interval_s``).
        **conf: extra Celery settings (override the defaults here).

    Returns:
        The app; no connection is opened until something is sent or consumed.
    """
    url = settings.broker_url
    if url.startswith("sqla+"):
        from kombu.transport.sqlalchemy import Transport

        # A class attribute: see the module docstring for the kombu 5.7.0 bug.
        Transport.polling_interval = settings.broker_polling_interval_s
        database = make_url(url.removeprefix("sqla+")).database
        if database and database != ":memory:":
            make_private_file(make_private_dir(Path(database).parent) / Path(database).name)
    app = Celery("mpq", broker=url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_publish_retry_policy=PUBLISH_RETRY,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        # A broker outage must not stop running trials: they need only the database,
        # and every task is idempotent should its message come back (Celery 6 will
        # default to cancelling them; pinned here).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        **conf,
    )
    return app


Send = Callable[[str, list[Any]], None]
"""``send(task_name, args)``: put a task message on the queue, by the task's name."""


def sender(queue: Celery) -> Send:
    """``send(task_name, args)`` putting a message on ``queue`` (by task name)."""

    def send(name: str, args: list[Any]) -> None:
        queue.send_task(name, args=args)

    return send
