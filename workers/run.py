"""One job, start to finish, on a worker: the body of the ``mpq.run_job`` task.

Steps, each re-reading the job's row (the task gets only its id):

1. skip a job that is no longer queued or running (cancelled, or already finished:
   a redelivered message is harmless);
2. open the evaluator on the job's model and data blobs, create the Optuna study
   ``job-<id>`` in the study storage (``Settings.study_url``), or join it when a
   previous delivery created it; mark the job running with its float baseline;
3. run trials until the budget, storing ``trials_done`` and the best plan so far after
   each one and stopping when the job has been cancelled;
4. finalize into ``<blob_dir>/jobs/<id>/`` and record the files as artifacts, the job
   succeeded.

A domain error (:class:`engine.errors.MPQError`: a bad plan, a data file that does not
fit) is deterministic, so the job is marked failed with its code and message. Database
and broker outages are transient: they propagate, and the task retries.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from optuna.trial import TrialState
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from engine.errors import MPQError
from search import (
    Evaluator,
    Search,
    SearchConfig,
    TrialRecord,
    best_so_far,
    create_search,
    finalize,
    join_search,
    open_evaluator,
    run_trials,
)
from service.blobs import BlobStore
from service.db import crud
from service.db.models import JobStatus
from service.settings import STUDY_SCHEMA, Settings

__all__ = ["ARTIFACTS", "JobCancelled", "run_job"]

log = logging.getLogger("workers.run")

ARTIFACTS = ("model.mpq", "result.json", "pareto.png", "layers.png")
"""Files of a job's output directory recorded as artifacts (when present)."""

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class JobCancelled(Exception):
    """Raised between trials to stop a job the user cancelled."""


def run_job(
    job_id: int, *, settings: Settings, sessions: sessionmaker[Session], trust_uploads: bool
) -> str:
    """Run job ``job_id`` to a final state; return the state it ended in (for the log)."""
    blobs = BlobStore(settings.blobs)
    with sessions() as session:
        job = crud.find_job_by_id(session, job_id)
        if job is None:
            log.warning("job %s does not exist; dropping its message", job_id)
            return "missing"
        if job.status not in crud.ACTIVE:
            return job.status.value
        config = _config(job.config, blobs, settings)
        study_name = job.study_name or f"job-{job_id}"
        source_sha256 = _model_sha(session, job.model_id)
    try:
        ev = open_evaluator(config, trust_uploads=trust_uploads)
        _prepare_study_storage(settings, sessions)
        search = _open_search(config, ev, settings.study_url, study_name)
        baseline = {"metric": search.baseline, "bytes": search.float_bytes}
        with sessions() as session:
            if not crud.start_job(session, job_id=job_id, baseline=baseline):
                return "cancelled"
        run_trials(search, ev, worker=0, on_trial=_Progress(job_id, search, sessions))
        out_dir = blobs.root / "jobs" / str(job_id)
        result = finalize(search, ev, out_dir, source_sha256=source_sha256)
    except JobCancelled:
        log.info("job %s cancelled; stopped between trials", job_id)
        return "cancelled"
    except MPQError as exc:
        with sessions() as session:
            crud.fail_job(session, job_id=job_id, code=exc.code, message=exc.message)
        return "failed"
    artifacts = [
        _artifact(blobs, out_dir, name) for name in ARTIFACTS if (out_dir / name).is_file()
    ]
    summary = {k: v for k, v in result.items() if k != "trials"}
    with sessions() as session:
        done = crud.finish_job(
            session, job_id=job_id, result=summary, trials_done=_finished(search),
            artifacts=artifacts,
        )  # fmt: skip
    return "succeeded" if done else "cancelled"


def _config(document: dict[str, Any], blobs: BlobStore, settings: Settings) -> SearchConfig:
    # The row keeps blob keys; this worker resolves them under its own blob directory.
    fields = {k: v for k, v in document.items() if k != "parallelism"}
    config = SearchConfig.from_json(fields)
    return replace(
        config,
        model=str(blobs.path(config.model)),
        data=str(blobs.path(config.data)),
        cache_dir=str(settings.data_dir / "cache"),
    )


def _prepare_study_storage(settings: Settings, sessions: sessionmaker[Session]) -> None:
    # On PostgreSQL the studies live in their own schema of the service database.
    if settings.study_url.startswith("postgresql"):
        with sessions() as session:
            session.execute(text(f"CREATE SCHEMA IF NOT EXISTS {STUDY_SCHEMA}"))
            session.commit()


def _model_sha(session: Session, model_id: int) -> str:
    from service.db.models import Model

    model = session.get(Model, model_id)
    return "" if model is None else model.sha256


def _open_search(config: SearchConfig, ev: Evaluator, storage_url: str, name: str) -> Search:
    """Join the job's study if an earlier delivery created it, else create it."""
    try:
        search = join_search(storage_url, name, worker=0)
    except KeyError:
        return create_search(config, ev, storage_url=storage_url, name=name)
    # The evaluator's configuration carries this worker's paths; the study's, the row's.
    return Search(search.study, config, search.baseline, search.float_bytes)


def _finished(search: Search) -> int:
    trials = search.study.get_trials(deepcopy=False, states=_FINISHED)
    return sum(1 for t in trials if not t.user_attrs.get("over_budget"))


class _Progress:
    """``run_trials``'s callback: store progress, and stop when the job was cancelled."""

    def __init__(self, job_id: int, search: Search, sessions: sessionmaker[Session]) -> None:
        self.job_id, self.search, self.sessions = job_id, search, sessions

    def __call__(self, record: TrialRecord) -> None:
        best = best_so_far(self.search)
        with self.sessions() as session:
            state = crud.record_progress(
                session, job_id=self.job_id, trials_done=_finished(self.search),
                best=None if best is None else best.to_json(),
            )  # fmt: skip
        if state != JobStatus.RUNNING:
            raise JobCancelled


def _artifact(blobs: BlobStore, out_dir: Path, name: str) -> tuple[str, str, int, str]:
    path = out_dir / name
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    key = str(path.relative_to(blobs.root))
    return name, key, path.stat().st_size, digest.hexdigest()
