"""The workers' Celery app: the service's queue configuration plus the tasks.

``celery -A workers.app worker`` (or ``mpq worker``) serves it. The settings come
from the ``MPQ_*`` environment, like the API's. When a worker is ready its main
process starts the recovery sweep (:mod:`workers.recovery`), with an engine of its
own that pooled processes never inherit.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.pool import NullPool

from service.db.session import make_engine, session_factory
from service.queue import make_celery
from service.settings import get_settings

__all__ = ["app", "send"]

app = make_celery(get_settings(), include=["workers.tasks"])


def send(name: str, args: list[Any]) -> None:
    """Enqueue task ``name`` with ``args`` on the workers' queue."""
    app.send_task(name, args=args)


_sweepers: list[Any] = []


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_recovery(**_: Any) -> None:
    from workers.recovery import Sweeper

    settings = get_settings()
    sessions = session_factory(make_engine(settings.database_url, poolclass=NullPool))
    sweeper = Sweeper(sessions, settings, send)
    sweeper.start()
    _sweepers.append(sweeper)


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _stop_recovery(**_: Any) -> None:
    while _sweepers:
        _sweepers.pop().stop()
