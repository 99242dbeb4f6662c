"""What a worker process keeps between tasks, and the heartbeat of the task it runs.

:class:`WorkerContext` bundles the settings, the database sessions, the blob store and
a way to send tasks, so :mod:`workers.run` can be driven by the Celery tasks and by
tests alike. Evaluators (a model's IR, the data, the float baseline, cached quantized
weights) are kept per process by the content of what they load -- blob keys are
``<kind>/<sha256>.<ext>`` -- so a job's later tasks on the same worker (more trial
runners, finalize) do not load and prime the model again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from search import Evaluator, SearchConfig, open_evaluator
from service.blobs import BlobStore
from service.db import liveness
from service.db.models import JobStatus
from service.queue import Send
from service.settings import Settings

__all__ = ["Alive", "Send", "WorkerContext"]

log = logging.getLogger("workers.context")

EVALUATORS = 2
"""Evaluators kept per worker process (a MiniLM one holds a few hundred MB)."""


@dataclass
class Alive:
    """What the heartbeat thread last read of its job: the state, None once gone."""

    state: JobStatus | None = JobStatus.RUNNING


@dataclass
class WorkerContext:
    """One worker process's connections and caches.

    Attributes:
        settings: the service settings.
        sessions: the database session factory.
        send: ``send(task_name, args)`` enqueues a task by name.
        trust_uploads: import legacy (non-IR) model blobs without isolation.
    """

    settings: Settings
    sessions: sessionmaker[Session]
    send: Send
    trust_uploads: bool = False
    _evaluators: OrderedDict[tuple[Any, ...], Evaluator] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def blobs(self) -> BlobStore:
        """The blob store under the settings' blob directory."""
        return BlobStore(self.settings.blobs)

    def evaluator(
        self, config: SearchConfig, *, on_step: Callable[[str, int, int], None] | None = None
    ) -> Evaluator:
        """The evaluator of ``config``'s model and data, loaded once per process.

        ``on_step`` hears the loading steps (:func:`search.open_evaluator`) when it loads.
        """
        key = (config.model, config.data, config.metric, config.chunks, config.holdout, config.seed)
        with self._lock:
            ev = self._evaluators.get(key)
            if ev is not None:
                self._evaluators.move_to_end(key)
                return ev
        ev = open_evaluator(config, trust_uploads=self.trust_uploads, on_step=on_step)
        with self._lock:
            self._evaluators[key] = ev
            while len(self._evaluators) > EVALUATORS:
                self._evaluators.popitem(last=False)
        return ev

    @contextmanager
    def heartbeat(self, job_id: int, *, expect: JobStatus = JobStatus.RUNNING) -> Iterator[Alive]:
        """Write job ``job_id``'s heartbeat every ``heartbeat_s`` while the block runs.

        Yields the :class:`Alive` the thread updates (from ``expect``, the state the
        job is in as the block starts), so long steps can notice a cancellation without
        a query of their own.
        """
        alive = Alive(expect)
        stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    with self.sessions() as session:
                        alive.state = liveness.beat(session, job_id=job_id)
                except Exception as exc:  # a missed beat is retried; the task goes on
                    log.warning("heartbeat of job %s failed: %s", job_id, exc)
                if stop.wait(self.settings.heartbeat_s):
                    return

        thread = threading.Thread(target=beat, name=f"job-{job_id}-heartbeat", daemon=True)
        thread.start()
        try:
            yield alive
        finally:
            stop.set()
            thread.join()
