"""Resuming jobs nobody works on: the sweep every worker runs in the background.

A job's tasks write its heartbeat (``jobs.heartbeat_at``) while they work. When a
worker is SIGKILLed, loses its machine, or the broker restarts empty and drops the
job's messages, the heartbeat stops. Each worker's main process sweeps every
``recovery_interval_s`` seconds: an active job silent for ``grace_s`` is claimed (one
sweeper wins, see :func:`service.db.liveness.claim_stale`) and the step it was in is
sent again:

- preparing (its worker died mid-preparation) → back to queued in the same claim, and
  ``mpq.run_job``, which claims it afresh; queued with a heartbeat (requeued so, and
  that message lost too) → ``mpq.run_job`` again;
- running, finalize not claimed → ``parallelism`` times ``mpq.run_trials``; the new
  runners fail the dead runners' trials once those are past the same grace period,
  and retry them (:mod:`search._trials`);
- running, finalize claimed → ``mpq.finalize``.

Every step is idempotent, so resuming a job that was only slow costs duplicate
messages that find nothing to do, never a wrong result (a prepare finds the job
claimed, or no longer queued, and backs off). Late acknowledgement
(``acks_late``) covers a pool process that dies under a live worker: its message
is requeued at once. The sweep covers what late acks cannot: a whole worker gone
(the embedded broker forgets unacknowledged messages with the connection that held
them; Redis gives them back only after its visibility timeout, an hour by default).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from service.db import liveness
from service.db.models import JobStatus
from service.domain import job_spec
from service.queue import FINALIZE, RUN_JOB
from service.settings import Settings
from workers.context import Send
from workers.run import send_runners
from workers.webhooks import sweep_webhooks

__all__ = ["Sweeper", "sweep"]

log = logging.getLogger("workers.recovery")


def sweep(sessions: sessionmaker[Session], settings: Settings, send: Send) -> list[int]:
    """Resume every stale job this call claims; return their ids."""
    resumed = []
    with sessions() as session:
        for job in liveness.stale_jobs(session, grace_s=settings.grace_s):
            assert job.heartbeat_at is not None  # stale_jobs selects on it
            if not liveness.claim_stale(session, job_id=job.id, seen=job.heartbeat_at):
                continue  # another worker's sweep took it
            log.warning(
                "job %s has been silent for over %.0f s; resuming it", job.id, settings.grace_s
            )
            if job.status in (JobStatus.QUEUED, JobStatus.PREPARING):
                send(RUN_JOB, [job.id])
            elif job.finalize_claimed_at is not None:
                send(FINALIZE, [job.id])
            else:
                send_runners(send, job.id, job_spec(job).parallelism)
            resumed.append(job.id)
    return resumed


class Sweeper:
    """A daemon thread running :func:`sweep` every ``recovery_interval_s`` seconds.

    Each round also runs :func:`workers.webhooks.sweep_webhooks` (final jobs whose
    webhooks were not dispatched, deliveries whose message was lost).
    """

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, send: Send) -> None:
        self.sessions, self.settings, self.send = sessions, settings, send
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mpq-recovery", daemon=True)

    def start(self) -> None:
        """Start sweeping (the first sweep runs at once: jobs left over by a crash)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current sweep."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            try:
                sweep(self.sessions, self.settings, self.send)
            except Exception as exc:  # the database or broker is down: try next time
                log.warning("recovery sweep failed: %s", exc)
            try:
                sweep_webhooks(self.sessions, self.settings, self.send)
            except Exception as exc:  # the same: the next sweep tries again
                log.warning("webhook sweep failed: %s", exc)
            if self._stop.wait(self.settings.recovery_interval_s):
                return
