"""What a job's tasks report while they work: the preparation's steps, the trials' progress.

Both store the job's progress document (:mod:`service.progress`) on its row and read
the job's state back, raising :class:`JobCancelled` when the job is no longer in the
state the task works on (a user cancelled it, or recovery requeued it), so the task
stops at its next step or trial.
"""

from __future__ import annotations

import time

from search import Search, TrialRecord, best_so_far, progress
from service.db import repos
from service.db.models import JobStatus
from service.progress import Throttle, eta_seconds, progress_doc
from workers.context import Alive, WorkerContext

__all__ = ["JobCancelled", "PrepareSteps", "TrialProgress"]


class JobCancelled(Exception):
    """Raised between trials or preparation steps to stop a job the user cancelled."""


class PrepareSteps:
    """The preparation's ``on_step``: store each step (throttled); stop a cancelled job.

    A step is written when it begins and then at most once a second
    (:class:`~service.progress.Throttle`); each write reads the job's state back. Between
    writes the heartbeat thread's last reading (``alive``) is checked, so a cancel is
    seen within a heartbeat even while a step's reports are throttled.
    """

    def __init__(self, ctx: WorkerContext, job_id: int, alive: Alive) -> None:
        self.ctx, self.job_id, self.alive = ctx, job_id, alive
        self.throttle = Throttle()
        self.throttle("loading")  # the claim stored it
        self.at = "loading"

    def __call__(self, step: str, done: int, total: int) -> None:
        self.at = f"{step} {done}/{total}"
        if self.throttle(step):
            doc = progress_doc("preparing", step=step, done=done, total=total)
            with self.ctx.sessions() as session:
                self.alive.state = repos.record_step(session, job_id=self.job_id, progress=doc)
        if self.alive.state != JobStatus.PREPARING:
            raise JobCancelled


class TrialProgress:
    """``run_trials``'s callback: store progress and time left; stop a cancelled job.

    The time left is :func:`service.progress.eta_seconds` of this runner's mean wall
    seconds per finished trial (from its creation to its latest trial).
    """

    def __init__(
        self,
        ctx: WorkerContext,
        job_id: int,
        search: Search,
        *,
        parallelism: int,
        deadline: float | None,
    ) -> None:
        self.ctx, self.job_id, self.search = ctx, job_id, search
        self.parallelism, self.deadline = parallelism, deadline
        self.t0, self.finished = time.monotonic(), 0
        self.mean_s: float | None = None

    def __call__(self, record: TrialRecord) -> None:
        self.finished += 1
        self.mean_s = (time.monotonic() - self.t0) / self.finished
        if self.store(progress(self.search).done) != JobStatus.RUNNING:
            raise JobCancelled

    def store(self, done: int) -> JobStatus | None:
        best = best_so_far(self.search)
        total = self.search.config.trials
        eta = eta_seconds(
            mean_s=self.mean_s,
            left=total - done,
            parallelism=self.parallelism,
            deadline_left_s=None if self.deadline is None else self.deadline - time.time(),
        )
        doc = progress_doc("searching", done=done, total=total, eta_s=eta)
        with self.ctx.sessions() as session:
            return repos.record_progress(
                session,
                job_id=self.job_id,
                trials_done=done,
                best=None if best is None else best.to_json(),
                progress=doc,
            )
