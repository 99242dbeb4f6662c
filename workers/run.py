"""A job on the workers, in three idempotent steps, each the body of one Celery task.

1. :func:`prepare` (``mpq.run_job``): claim the queued job (``preparing``), open the
   evaluator on the job's IR and data, create the job's Optuna study (``study_name``:
   sensitivity, ILP seeds) or join it when an earlier delivery made it, mark the job
   running with its float baseline, and send ``parallelism`` trial runners. A job with
   ``warm_start_job_id`` (a nightly job: its schedule's last succeeded one) starts its
   study from that job's chosen plan and front (:mod:`search._warm`); an unusable one
   (failed, another team's, its study gone) leaves the job cold. Its result then holds
   ``warm_start``: ``from_job``, ``seeded_plans``, ``layers_reused``, ``layers_measured``. Each step
   of the preparation is stored as the job's progress (:mod:`service.progress`), and a
   job cancelled meanwhile stops at its next step.
2. :func:`run_runner` (``mpq.run_trials``): pull trials from the shared study until
   its budget is taken or the job's deadline passes (see :mod:`search._trials` for
   how the budget holds across runners and crashes), storing progress after each
   trial, with the estimated time left. The runner that finds the budget spent and
   nothing running claims the finalize (once, in the database; the job's phase becomes
   ``finalizing``) and sends it.
3. :func:`finalize_job` (``mpq.finalize``): finalists, integer-only check, artifacts
   written to a temporary directory and committed to the blob store, the job succeeded.
   The result (and ``result.json``) names the model and data as the user does, and so
   does a failure's message: no server path reaches the user (:mod:`workers.public`).

Every step re-reads the job's row (tasks get ids only), skips a job no longer in the
state it expects (a redelivered or duplicate message is harmless), and writes the
job's heartbeat while it works; :mod:`workers.recovery` resumes a job whose heartbeat
stops. A domain error (:class:`engine.errors.MPQError`) is deterministic: the job is
marked failed with its code and message. Database and broker outages propagate, and
the task retries.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time

import optuna
from sqlalchemy import text
from sqlalchemy.orm import Session

from engine.errors import MPQError
from search import (
    Search,
    SearchConfig,
    finalize,
    join_search,
    open_search,
    progress,
    run_trials,
)
from service.db import liveness, repos
from service.db.models import Dataset, Job, JobStatus, Model
from service.domain import complete_job, job_inputs, job_spec
from service.domain.regression import RegressionTolerance
from service.progress import progress_doc
from service.queue import FINALIZE, RUN_TRIALS
from service.settings import STUDY_SCHEMA
from workers.context import Send, WorkerContext
from workers.nightly import after_success
from workers.public import Labels, rewrite_result_file, without_paths
from workers.reports import JobCancelled, PrepareSteps, TrialProgress
from workers.warm import earlier_job, warm_start
from workers.webhooks import notify

__all__ = ["ARTIFACTS", "JobCancelled", "finalize_job", "prepare", "run_runner"]

log = logging.getLogger("workers.run")

ARTIFACTS = ("model.mpq", "model.onnx", "result.json", "pareto.png", "layers.png")
"""Files of a job's output directory recorded as artifacts (when present)."""


def prepare(ctx: WorkerContext, job_id: int) -> str:
    """Step 1: claim the job, create (or join) its study, mark it running, send its runners."""
    with ctx.sessions() as session:
        job = repos.find_job_by_id(session, job_id)
        if job is None:
            log.warning("job %s does not exist; dropping its message", job_id)
            return "missing"
        if job.status != JobStatus.QUEUED:
            return job.status.value  # taken by another delivery, or finished
        config, name = _config(ctx, session, job), _study(job)
        labels = _labels(ctx, session, job)
        parallelism = job_spec(job).parallelism
        earlier = earlier_job(session, job)
        loading = progress_doc("preparing", step="loading", done=0, total=1)
        if not repos.claim_job(session, job_id=job_id, progress=loading):
            return "taken"  # a duplicate delivery claimed it first, or it was cancelled
    warm = warm_start(ctx, job_id, earlier)
    with ctx.heartbeat(job_id, expect=JobStatus.PREPARING) as alive:
        steps = PrepareSteps(ctx, job_id, alive)
        try:
            ev = ctx.evaluator(config, on_step=steps)
            _prepare_study_storage(ctx)
            search = open_search(
                config, ev, storage_url=ctx.settings.study_url, name=name, on_step=steps, warm=warm
            )
        except JobCancelled:
            log.info("job %s left preparing (%s); stopped at %s", job_id, alive.state, steps.at)
            return "stopped" if alive.state is None else alive.state.value
        except MPQError as exc:
            return _fail(ctx, job_id, exc, labels)
        except optuna.exceptions.DuplicatedStudyError:
            # A duplicate delivery is preparing the same job right now; it carries on.
            log.info("job %s is being prepared by another task; leaving it to that one", job_id)
            return "duplicate"
        held = ev.heldout_baseline
        baseline = {
            "metric": search.baseline,
            "bytes": search.float_bytes,
            "heldout": None if held is None else held.to_json(),
        }
        searching = progress_doc("searching", done=0, total=config.trials)
        with ctx.sessions() as session:
            if not repos.start_job(session, job_id=job_id, baseline=baseline, progress=searching):
                return "cancelled"
    send_runners(ctx.send, job_id, parallelism)
    return "running"


def send_runners(send: Send, job_id: int, parallelism: int) -> None:
    """Enqueue the job's ``parallelism`` trial runners (a failure is left to recovery)."""
    for runner in range(parallelism):
        try:
            send(RUN_TRIALS, [job_id, runner])
        except Exception as exc:
            log.error("job %s: could not send runner %s (%s); recovery will", job_id, runner, exc)
            return


def run_runner(ctx: WorkerContext, job_id: int, runner: int) -> str:
    """Step 2: run trials of the job's study; finalize when this runner ends the budget."""
    with ctx.sessions() as session:
        job = repos.find_job_by_id(session, job_id)
        if job is None or job.status != JobStatus.RUNNING:
            return "skipped" if job is None else job.status.value
        if job.finalize_claimed_at is not None:
            return "finalizing"
        config, name = _config(ctx, session, job), _study(job)
        labels = _labels(ctx, session, job)
        parallelism = job_spec(job).parallelism
        deadline = None
        if config.timeout_s is not None and job.started_at is not None:
            deadline = job.started_at.timestamp() + config.timeout_s
    settings = ctx.settings
    with ctx.heartbeat(job_id) as alive:
        try:
            ev = ctx.evaluator(config)
            search = _join(ctx, config, name, runner)
            reporter = TrialProgress(
                ctx, job_id, search, parallelism=parallelism, deadline=deadline
            )
            ran = run_trials(
                search,
                ev,
                worker=runner,
                on_trial=reporter,
                deadline=deadline,
                heartbeat_s=settings.heartbeat_s,
                grace_s=settings.grace_s,
                should_stop=lambda: alive.state != JobStatus.RUNNING,
            )
        except JobCancelled:
            log.info("job %s cancelled; runner %s stopped between trials", job_id, runner)
            return "cancelled"
        except MPQError as exc:
            return _fail(ctx, job_id, exc, labels)
        if alive.state != JobStatus.RUNNING:
            return "cancelled" if alive.state == JobStatus.CANCELLED else "stopped"
        state = progress(search)
        spent = state.done >= state.budget or (deadline is not None and time.time() >= deadline)
        if not (spent and state.settled):
            return f"ran {ran}"  # others are still running; the last one finalizes
        reporter.store(state.done)
        with ctx.sessions() as session:
            claimed = liveness.claim_finalize(session, job_id=job_id)
    if claimed:
        try:
            ctx.send(FINALIZE, [job_id])
        except Exception as exc:
            log.error("job %s: could not send finalize (%s); recovery will", job_id, exc)
    return f"ran {ran}"


def finalize_job(ctx: WorkerContext, job_id: int) -> str:
    """Step 3: choose the result, write the artifacts, mark the job succeeded."""
    with ctx.sessions() as session:
        job = repos.find_job_by_id(session, job_id)
        if job is None or job.status != JobStatus.RUNNING:
            return "skipped" if job is None else job.status.value
        config, name = _config(ctx, session, job), _study(job)
        labels = _labels(ctx, session, job)
        source_sha256 = job_inputs(session, job).model_sha256
    blobs = ctx.blobs
    out_dir = blobs.new_temp_dir()
    with ctx.heartbeat(job_id):
        try:
            ev = ctx.evaluator(config)
            search = _join(ctx, config, name, 0)
            result = finalize(search, ev, out_dir, source_sha256=source_sha256)
        except BaseException as exc:
            shutil.rmtree(out_dir, ignore_errors=True)  # no artifact row will refer to it
            if isinstance(exc, MPQError):
                return _fail(ctx, job_id, exc, labels)
            raise
        rewrite_result_file(out_dir / "result.json", labels)
        public = without_paths(result, labels)
        summary = {k: v for k, v in public.items() if k != "trials"}
        if "warm_start" in search.study.user_attrs:
            summary["warm_start"] = search.study.user_attrs["warm_start"]
        with ctx.sessions() as session:
            done = complete_job(
                session,
                store=blobs,
                job_id=job_id,
                result=summary,
                trials_done=progress(search).done,
                out_dir=out_dir,
                names=ARTIFACTS,
                tolerance=RegressionTolerance(
                    bytes=ctx.settings.regression_bytes_tolerance,
                    metric=ctx.settings.regression_metric_tolerance,
                ),
            )
    notify(ctx.sessions, ctx.send, job_id)  # the job's webhooks (the sweep if this fails)
    if done:
        after_success(ctx, job_id)  # the schedule's retention
    return "succeeded" if done else "cancelled"  # cancelled while finalizing


def _fail(ctx: WorkerContext, job_id: int, exc: MPQError, labels: Labels) -> str:
    message = labels.text(exc.message)  # the user's names, no server path
    with ctx.sessions() as session:
        repos.fail_job(session, job_id=job_id, code=exc.code, message=message)
    notify(ctx.sessions, ctx.send, job_id)
    return "failed"


def _labels(ctx: WorkerContext, session: Session, job: Job) -> Labels:
    """The job's server paths and the names its user knows them by (:mod:`workers.public`)."""
    inputs, blobs = job_inputs(session, job), ctx.blobs
    model, dataset = session.get(Model, job.model_id), session.get(Dataset, job.dataset_id)
    model_name = f"model {job.model_id}" + (
        "" if model is None else f" ({model.name!r} v{model.version})"
    )
    data_name = f"dataset {job.dataset_id}" + ("" if dataset is None else f" ({dataset.name!r})")
    names = {
        str(blobs.path(inputs.model_key)): model_name,
        str(blobs.path(inputs.data_key)): data_name,
        str(ctx.settings.data_dir / "cache"): "the sensitivity cache",
    }
    roots = {str(ctx.settings.data_dir), str(blobs.root), str(blobs.root.resolve())}
    return Labels(names, sorted(roots | {tempfile.gettempdir()}))


def _config(ctx: WorkerContext, session: Session, job: Job) -> SearchConfig:
    # The rows keep blob keys; this worker resolves them under its own blob directory.
    inputs, blobs = job_inputs(session, job), ctx.blobs
    return job_spec(job).search_config(
        model=str(blobs.path(inputs.model_key)),
        data=str(blobs.path(inputs.data_key)),
        cache_dir=str(ctx.settings.data_dir / "cache"),
    )


def _join(ctx: WorkerContext, config: SearchConfig, name: str, worker: int) -> Search:
    search = join_search(ctx.settings.study_url, name, worker=worker)
    # The study keeps the paths of the worker that made it; this worker's are in `config`.
    return Search(search.study, config, search.baseline, search.float_bytes)


def _study(job: Job) -> str:
    return job.study_name or repos.study_name(job.id)


def _prepare_study_storage(ctx: WorkerContext) -> None:
    # On PostgreSQL the studies live in their own schema of the service database.
    if ctx.settings.study_url.startswith("postgresql"):
        with ctx.sessions() as session:
            session.execute(text(f"CREATE SCHEMA IF NOT EXISTS {STUDY_SCHEMA}"))
            session.commit()
