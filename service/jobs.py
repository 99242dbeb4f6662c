"""Jobs as the API sees them: submit (row committed, then enqueued by name), cancel, read.

Each function owns its transaction. :func:`submit_job` validates the request with the
search's own types (``search.SearchConfig``) before any row exists, commits the job,
and only then sends ``mpq.run_job`` with the job's id; when the broker cannot be
reached the job is marked failed (``queue_unavailable``) so no row waits forever.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from engine.errors import InvalidPlanError, MPQError, QueueUnavailableError
from search import SearchConfig, SearchSpace, Targets, front, join_search, trial_records
from service.db import crud
from service.db.models import ApiKey, Job, Team
from service.queue import RUN_JOB
from service.schemas import JobCreate
from service.settings import Settings

__all__ = ["job_trials", "search_config", "submit_job"]

log = logging.getLogger("service.jobs")


def search_config(request: JobCreate, *, model_path: str, data_path: str) -> SearchConfig:
    """The search configuration of a job request (validated by the search's own rules).

    Raises:
        InvalidPlanError: an unknown metric or format, or targets the metric cannot have.
    """
    t = request.targets
    targets = Targets(
        max_drop=t.max_drop, max_drop_rel=t.max_drop_rel, min_metric=t.min_metric,
        max_bytes=t.max_bytes, min_ratio=t.min_ratio,
    )  # fmt: skip
    space = SearchSpace() if request.space is None else SearchSpace(tuple(request.space))
    if request.space is not None and not request.space:
        raise InvalidPlanError("space must list at least one weight format, e.g. ['int4', 'int8']")
    return SearchConfig(
        model=model_path, data=data_path, metric=request.metric, targets=targets, space=space,
        trials=request.budget.trials, timeout_s=request.budget.timeout_s, seed=request.seed,
    )  # fmt: skip


def submit_job(
    session: Session,
    *,
    team: Team,
    request: JobCreate,
    settings: Settings,
    queue: Celery,
    created_by: ApiKey | None = None,
) -> Job:
    """Validate ``request``, commit a queued job, then enqueue ``mpq.run_job`` by name.

    Raises:
        NotFoundError: the model or dataset is not the team's.
        InvalidPlanError: the search configuration is invalid.
        QueueUnavailableError: the broker could not be reached (the job is marked failed).
    """
    model = crud.get_model(session, team=team, model_id=request.model_id)
    dataset = crud.get_dataset(session, team=team, dataset_id=request.dataset_id)
    if request.budget.trials > settings.max_trials:
        raise InvalidPlanError(
            f"budget.trials is {request.budget.trials}; this service allows at most "
            f"{settings.max_trials}"
        )
    # Workers load the importer's IR, never the upload (rows from before IR was kept: the upload).
    model_key = model.ir_blob_path or model.blob_path
    config = search_config(request, model_path=model_key, data_path=dataset.blob_path)
    document: dict[str, Any] = {
        **config.to_json(),
        "parallelism": min(request.parallelism, settings.max_parallelism),
    }
    # Paths are blob keys, resolved by each worker under its own blob directory.
    job = crud.create_job(
        session, team=team, model=model, dataset=dataset, config=document,
        trials_total=config.trials, created_by=created_by,
    )  # fmt: skip
    try:
        queue.send_task(RUN_JOB, args=[job.id])
    except Exception as exc:
        log.error("could not enqueue job %s: %s", job.id, exc)
        message = f"the job queue is unreachable ({type(exc).__name__}); submit the job again"
        crud.fail_job(session, job_id=job.id, code=QueueUnavailableError.code, message=message)
        raise QueueUnavailableError(message) from None
    return job


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
    return [r.to_json() for r in records], [r.number for r in front(records)]
