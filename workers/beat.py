"""Beat's scheduler: the schedules live in the database, read afresh every tick.

:class:`DatabaseScheduler` replaces Celery's shelve-backed ``PersistentScheduler``: every
``MPQ_BEAT_INTERVAL_S`` seconds it calls :func:`service.domain.fire_due`, which reads the
enabled schedules (so creating, changing or disabling one needs no restart) and fires
each due time that has no run row yet. It keeps no state of its own -- the run rows are
the state -- so two beat processes may run against one database (one of them wins each
due time, by the unique (schedule, due time) constraint) and a beat restarted mid-minute
does not fire again. Entries of ``app.conf.beat_schedule``, if any, still run, kept in
memory by Celery's base :class:`celery.beat.Scheduler`.

A sweep holds SIGINT and SIGTERM back: Celery's beat answers them by raising
``SystemExit`` wherever the main thread is, which in the middle of a sweep would cut a
database call short (a half-closed connection, a claimed due time with no job). Held,
the signal waits until the sweep has committed, and beat then stops as usual. Only
SIGKILL can still stop beat between a claim and its submit.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.beat import Scheduler
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from service.blobs import BlobStore
from service.db.base import utcnow
from service.db.session import make_engine, session_factory
from service.domain import fire_due
from service.settings import get_settings

__all__ = ["DatabaseScheduler"]

log = logging.getLogger("workers.beat")


class DatabaseScheduler(Scheduler):  # type: ignore[misc]
    """Celery beat scheduler firing the database's schedules (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.settings = get_settings()
        if kwargs.get("max_interval") is None:
            kwargs["max_interval"] = self.settings.beat_interval_s
        self._sessions = session_factory(
            make_engine(self.settings.database_url, poolclass=NullPool)
        )
        self._store = BlobStore(self.settings.blobs)
        self._next_sweep = 0.0
        self._stopping = False
        super().__init__(*args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Run Celery's own entries, and the database sweep when its interval is up.

        Returns the seconds to sleep before the next tick.
        """
        delay = float(super().tick(*args, **kwargs))
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.beat_interval_s
            self.sweep()
        return max(0.0, min(delay, self._next_sweep - time.monotonic()))

    def close(self) -> None:
        """Beat is stopping: say so once (Celery closes the scheduler from its signal
        handler and again on leaving its loop)."""
        if not self._stopping:
            self._stopping = True
            log.info("beat: stopping")
        super().close()

    def sweep(self) -> None:
        """Fire the schedules due now; an error is logged, and the next tick tries again.

        A database outage is expected now and then (a warning); anything else is a bug,
        logged with its traceback, which must not stop the other schedules' next ticks.
        """
        try:
            with _stop_signals_deferred(), self._sessions() as session:
                runs = fire_due(
                    session, now=utcnow(), settings=self.settings, queue=self.app, store=self._store
                )
                for run in runs:
                    log.info("beat: schedule %s fired for %s", run.schedule_id, run.due_at)
        except DBAPIError as exc:
            log.warning("beat: the database is unreachable (%s); retrying next tick", exc)
        except Exception:
            log.exception("beat: firing the schedules failed; retrying next tick")


@contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM inside the block; one that arrived is raised again on leaving.

    Python runs signal handlers in the main thread only, so swapping the handlers defers
    the signal whichever thread the kernel delivered it to. Outside the main thread (beat
    embedded in a worker with ``-B``) handlers cannot be swapped, and nothing is deferred.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    stops: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, hold) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)
