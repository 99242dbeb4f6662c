"""Jobs: submit one from a :class:`~search.JobSpec`, cancel it, read its trials, complete it.

:func:`submit_job` takes the spec as the CLI, the API, the dashboard or a schedule built
it: it checks the model and dataset are the team's and the spec fits the service's
limits, commits the job (the spec stored as is, its parallelism capped), and only then
sends ``mpq.run_job`` with the job's id; when the broker cannot be reached the job is
marked failed (``queue_unavailable``) so no row waits forever. :func:`complete_job` is
the workers' last step: the files a finalize wrote become content-addressed blobs and
the job succeeds, or, cancelled meanwhile, nothing of it remains.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from engine.data import LABELS, METRICS, array_names
from engine.errors import InvalidPlanError, MetricNotApplicableError, MPQError
from search import JobSpec, front, join_search, trial_records
from service.blobs import BlobStore
from service.db import repos
from service.db.models import ApiKey, Dataset, Job, JobStatus, Model, Team
from service.domain._blobs import forget_blobs
from service.domain._fit import check_fit, check_pairing
from service.domain.quotas import active_jobs_guard
from service.domain.regression import RegressionTolerance, find_regression
from service.domain.webhook_events import notify_job
from service.errors import QueueUnavailableError
from service.queue import RUN_JOB, Send
from service.settings import Settings

__all__ = [
    "JobInputs",
    "cancel_job",
    "check_job",
    "complete_job",
    "job_inputs",
    "job_spec",
    "job_trials",
    "submit_job",
]

log = logging.getLogger("service.domain.jobs")


def submit_job(
    session: Session,
    *,
    team: Team,
    model_id: int,
    dataset_id: int,
    spec: JobSpec,
    settings: Settings,
    queue: Celery,
    created_by: ApiKey | None = None,
    store: BlobStore | None = None,
    schedule_id: int | None = None,
    warm_start_job_id: int | None = None,
) -> Job:
    """Commit a queued job searching ``spec`` on a model and dataset, then enqueue it by name.

    Args:
        session: the database session (no pending changes).
        team: the team the job is for; the model and dataset must be its own.
        model_id: the model to compress.
        dataset_id: the data to calibrate and evaluate on.
        spec: what to search; stored on the row with ``parallelism`` capped at
            ``settings.max_parallelism``.
        settings: the service settings (``max_trials``, ``max_parallelism``,
            ``max_active_jobs_per_team``).
        queue: the Celery app ``mpq.run_job`` is sent through.
        created_by: the API key that submitted it.
        store: the blob store holding the dataset; given, a metric that needs labels is
            checked against the file's array names (the rest of what a metric needs --
            its classes -- is known only once the model runs, and fails the job).
        schedule_id: the schedule submitting the job (beat), stored on the row.
        warm_start_job_id: an earlier succeeded job of the team whose results seed this
            one's search (the worker reads it from the row).

    Raises:
        NotFoundError: the model or dataset is not the team's.
        DatasetModelMismatchError: the dataset was validated for a model with other inputs.
        InvalidPlanError: the spec asks for more trials than the service allows, a layer
            fits no format of the space, or a size target no plan can meet
            (:mod:`service.domain._fit`).
        MetricNotApplicableError: the metric needs labels and the dataset has none.
        QuotaExceededError: the team has ``settings.max_active_jobs_per_team`` active jobs.
        QueueUnavailableError: the broker could not be reached (the job is marked failed).
    """
    model = repos.get_model(session, team=team, model_id=model_id)
    dataset = repos.get_dataset(session, team=team, dataset_id=dataset_id)
    check_job(model=model, dataset=dataset, spec=spec, settings=settings, store=store)
    spec = replace(spec, parallelism=min(spec.parallelism, settings.max_parallelism))
    job = repos.create_job(
        session,
        team=team,
        model=model,
        dataset=dataset,
        spec=spec,
        created_by=created_by,
        guard=active_jobs_guard(team, limit=settings.max_active_jobs_per_team),
        schedule_id=schedule_id,
        warm_start_job_id=warm_start_job_id,
    )
    try:
        queue.send_task(RUN_JOB, args=[job.id])
    except Exception as exc:
        log.error("could not enqueue job %s: %s", job.id, exc)
        message = f"the job queue is unreachable ({type(exc).__name__}); submit the job again"
        repos.fail_job(session, job_id=job.id, code=QueueUnavailableError.code, message=message)
        raise QueueUnavailableError(message) from None
    return job


def check_job(
    *, model: Model, dataset: Dataset, spec: JobSpec, settings: Settings, store: BlobStore | None
) -> None:
    """Everything :func:`submit_job` checks of a job before accepting it (schedules too).

    Raises:
        DatasetModelMismatchError, InvalidPlanError, MetricNotApplicableError: as
        :func:`submit_job` documents.
    """
    check_pairing(model, dataset)
    if spec.trials > settings.max_trials:
        raise InvalidPlanError(
            f"`budget.trials` is {spec.trials}; this service allows at most {settings.max_trials}"
        )
    check_fit(spec, model)
    if store is not None and METRICS[spec.metric].needs_labels:
        _check_labels(store, dataset, spec.metric)


def _check_labels(store: BlobStore, dataset: Dataset, metric: str) -> None:
    if LABELS not in array_names(store.path(dataset.blob_path)):
        raise MetricNotApplicableError(
            f"metric {metric!r} needs a 'labels' array and dataset {dataset.id} "
            f"({dataset.name!r}) has none; "
            "upload one with labels, or use agreement, top5 or kl (against the float model)"
        )


def cancel_job(session: Session, *, team: Team, job_id: int, send: Send | None = None) -> Job:
    """Cancel the team's job ``job_id`` if queued, preparing or running (idempotent once so).

    With ``send``, the team's webhooks get ``job.cancelled`` at once
    (:func:`service.domain.webhook_events.notify_job`) rather than at the workers'
    next sweep.

    Raises:
        NotFoundError: the job is not the team's.
        ConflictError: the job has already succeeded or failed.
    """
    job = repos.cancel_job(session, job=repos.get_job(session, team=team, job_id=job_id))
    if send is not None and job.status == JobStatus.CANCELLED and job.notified_at is None:
        notify_job(session, send, job_id=job.id)
        session.refresh(job)
    return job


def job_spec(job: Job) -> JobSpec:
    """The spec ``job`` was submitted with (rows written before the spec existed too)."""
    return JobSpec.from_stored(job.config)


@dataclass(frozen=True)
class JobInputs:
    """What a job runs on: blob keys of the model's IR and of the data, the upload's sha256."""

    model_key: str
    data_key: str
    model_sha256: str


def job_inputs(session: Session, job: Job) -> JobInputs:
    """The blobs ``job`` searches on (the importer's IR; the upload for rows older than IR)."""
    model = session.get(Model, job.model_id)
    dataset = session.get(Dataset, job.dataset_id)
    assert model is not None and dataset is not None  # foreign keys, never deleted
    return JobInputs(model.ir_blob_path or model.blob_path, dataset.blob_path, model.sha256)


def job_trials(job: Job, *, settings: Settings) -> tuple[list[dict[str, Any]], list[int]]:
    """The trials of ``job``'s Optuna study so far, and the numbers of its Pareto front.

    A job whose study does not exist yet (queued, or failed or cancelled before the
    search began: it has no baseline) has no trials.
    """
    if job.study_name is None or job.baseline is None:
        return [], []  # the study is made (and ready) before the job gets its baseline
    try:
        search = join_search(settings.study_url, job.study_name, worker=0, read_only=True)
    except (KeyError, MPQError):
        return [], []
    records = trial_records(search)
    pareto = front(records, metric=search.config.metric)
    return [r.to_json() for r in records], [r.number for r in pareto]


def complete_job(
    session: Session,
    *,
    store: BlobStore,
    job_id: int,
    result: dict[str, Any],
    trials_done: int,
    out_dir: Path,
    names: tuple[str, ...],
    tolerance: RegressionTolerance | None = None,
) -> bool:
    """Commit the files ``names`` of ``out_dir`` as blobs and mark running job ``job_id`` done.

    Each file present becomes the blob ``artifacts/<sha256>.<suffix>`` and an artifact
    row named after it; ``out_dir`` is removed. A scheduled job is compared with its
    schedule's last succeeded run (:mod:`service.domain.regression`, with ``tolerance``;
    the defaults when None) and the comparison stored with the success, in one
    transaction. Returns False, keeping no blob it created, when the job is no longer
    running (cancelled while it finalized).
    """
    files, made = [], []
    try:
        for name in names:
            path = out_dir / name
            if path.is_file():
                ext = path.suffix.removeprefix(".") or "bin"
                key, created, size, sha256 = store.commit_file(path, kind="artifacts", ext=ext)
                files.append((name, key, size, sha256))
                made += [key] if created else []
        job = session.get(Job, job_id)
        regression = (
            None
            if job is None
            else find_regression(
                session, job=job, result=result, tolerance=tolerance or RegressionTolerance()
            )
        )
        done = repos.finish_job(
            session,
            job_id=job_id,
            result=result,
            trials_done=trials_done,
            artifacts=files,
            regression=regression,
        )
    except BaseException:
        forget_blobs(session, store, made)
        raise
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if not done:
        forget_blobs(session, store, made)
    return done
