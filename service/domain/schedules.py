"""Schedules: recurring jobs of one recipe, created and changed fully checked, fired by beat.

A schedule names its model by name and alias (none: the latest version when it fires),
a dataset and a job spec. :func:`create_schedule` and :func:`update_schedule` check all
of it with the code ``POST /v1/jobs`` uses (:func:`service.domain.jobs.check_job`)
against the version the alias names now, so a schedule that is accepted would submit.

:func:`fire_due` is what ``mpq beat`` does each tick (``MPQ_BEAT_INTERVAL_S``): for each
enabled schedule, the due time :func:`service.domain.cron.due_time` picks (the latest
one not after now and not before the schedule's last change) is fired unless it has a
run row. Firing inserts the run row first (the unique (schedule, due time) constraint
lets one beat process win), then resolves the model, takes the schedule's last
succeeded job as the warm start and submits through
:func:`service.domain.jobs.submit_job`. A run that cannot submit (the model or alias
gone, a quota, the spec no longer fits) keeps the error's code and message and no job.
A beat killed outright (SIGKILL; beat defers SIGTERM while it fires) between the insert
and the submit leaves a run with neither: that due time is not retried (at most one job
per due time, never two).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import Celery
from sqlalchemy.orm import Session

from engine.errors import MPQError
from search import JobSpec
from service.blobs import BlobStore
from service.db import repos
from service.db.models import ApiKey, JobStatus, Schedule, ScheduleRun, Team
from service.db.repos._names import check_label
from service.domain.cron import check_cron, due_time
from service.domain.jobs import check_job, submit_job
from service.domain.registry import resolve_model
from service.settings import Settings

__all__ = ["create_schedule", "fire_due", "fire_schedule", "schedule_runs", "update_schedule"]

log = logging.getLogger("service.domain.schedules")


def _check(
    session: Session,
    *,
    team: Team,
    fields: dict[str, Any],
    settings: Settings,
    store: BlobStore | None,
) -> None:
    check_label(fields["name"], what="schedule")
    check_cron(fields["cron"], fields["timezone"])
    model = resolve_model(
        session, team=team, name=fields["model_name"], alias=fields["model_alias"]
    )
    dataset = repos.get_dataset(session, team=team, dataset_id=fields["dataset_id"])
    spec = JobSpec.from_stored(fields["config"])
    check_job(model=model, dataset=dataset, spec=spec, settings=settings, store=store)
    session.rollback()  # end the read transaction before the write


def create_schedule(
    session: Session,
    *,
    team: Team,
    name: str,
    cron: str,
    timezone: str,
    model_name: str,
    model_alias: str | None,
    dataset_id: int,
    spec: JobSpec,
    settings: Settings,
    enabled: bool = True,
    store: BlobStore | None = None,
    created_by: ApiKey | None = None,
) -> Schedule:
    """Check and record a schedule of ``team`` (committed).

    Raises:
        InvalidNameError: ``name`` is empty, blank, too long or unprintable.
        InvalidScheduleError: ``cron`` does not parse or ``timezone`` is no IANA zone.
        InvalidAliasError, NotFoundError: no such model, alias or dataset for ``team``.
        DatasetModelMismatchError, InvalidPlanError, MetricNotApplicableError: the job
            ``POST /v1/jobs`` would refuse (see :func:`service.domain.jobs.submit_job`).
        ConflictError: ``team`` has a schedule named ``name``.
    """
    fields: dict[str, Any] = {
        "name": name,
        "cron": " ".join(cron.split()),
        "timezone": timezone,
        "model_name": model_name,
        "model_alias": model_alias,
        "dataset_id": dataset_id,
        "config": spec.to_json(),
        "enabled": enabled,
    }
    _check(session, team=team, fields=fields, settings=settings, store=store)
    return repos.create_schedule(session, team=team, created_by=created_by, **fields)


def update_schedule(
    session: Session,
    *,
    team: Team,
    schedule_id: int,
    changes: dict[str, Any],
    settings: Settings,
    store: BlobStore | None = None,
) -> Schedule:
    """Change fields of ``team``'s schedule; the result is checked as a new one would be.

    ``changes`` holds schedule column names (``name``, ``cron``, ``timezone``,
    ``model_name``, ``model_alias``, ``dataset_id``, ``enabled``) and ``spec`` (a
    :class:`~search.JobSpec` replacing the job options). Any change restarts the
    catch-up window (a due time before the change is never fired).

    Raises:
        NotFoundError: the schedule is not ``team``'s; and as :func:`create_schedule`.
    """
    schedule = repos.get_schedule(session, team=team, schedule_id=schedule_id)
    changes = dict(changes)
    if "spec" in changes:
        changes["config"] = changes.pop("spec").to_json()
    if "cron" in changes:
        changes["cron"] = " ".join(changes["cron"].split())
    fields = {k: getattr(schedule, k) for k in repos.schedules.EDITABLE} | changes
    _check(session, team=team, fields=fields, settings=settings, store=store)
    return repos.update_schedule(session, schedule=schedule, changes=changes)


def schedule_runs(
    session: Session, *, team: Team, schedule_id: int, skip: int = 0, limit: int = 100
) -> tuple[list[tuple[ScheduleRun, JobStatus | None]], int]:
    """A page of the runs of ``team``'s schedule (latest first, with job status) and the total.

    Raises:
        NotFoundError: the schedule is not ``team``'s.
    """
    schedule = repos.get_schedule(session, team=team, schedule_id=schedule_id)
    rows = repos.list_schedule_runs(session, schedule=schedule, skip=skip, limit=limit)
    return rows, repos.count_schedule_runs(session, schedule=schedule)


def fire_schedule(
    session: Session,
    *,
    schedule: Schedule,
    due_at: datetime,
    settings: Settings,
    queue: Celery,
    store: BlobStore | None = None,
) -> ScheduleRun | None:
    """Fire ``schedule`` for ``due_at``: claim the run, then submit its job (see above).

    Returns the run, or None when another process claimed ``due_at`` first.
    """
    run = repos.claim_run(session, schedule_id=schedule.id, due_at=due_at)
    if run is None:
        log.info("schedule %s: %s was fired by another beat; skipped", schedule.id, due_at)
        return None
    team = session.get(Team, schedule.team_id)
    assert team is not None  # a team's schedules go with it
    key = (
        None
        if schedule.created_by_key_id is None
        else session.get(ApiKey, schedule.created_by_key_id)
    )
    try:
        model = resolve_model(
            session, team=team, name=schedule.model_name, alias=schedule.model_alias
        )
        job = submit_job(
            session,
            team=team,
            model_id=model.id,
            dataset_id=schedule.dataset_id,
            spec=JobSpec.from_stored(schedule.config),
            settings=settings,
            queue=queue,
            created_by=key,
            store=store,
            schedule_id=schedule.id,
            warm_start_job_id=repos.find_last_succeeded_job(session, schedule_id=schedule.id),
        )
    except MPQError as exc:
        session.rollback()
        log.warning("schedule %s: the run due %s submitted no job: %s", schedule.id, due_at, exc)
        repos.record_run(session, run=run, error_code=exc.code, error_message=str(exc))
        return run
    repos.record_run(session, run=run, job_id=job.id)
    log.info("schedule %s: the run due %s submitted job %s", schedule.id, due_at, job.id)
    return run


def fire_due(
    session: Session,
    *,
    now: datetime,
    settings: Settings,
    queue: Celery,
    store: BlobStore | None = None,
) -> list[ScheduleRun]:
    """One beat tick at ``now``: fire each enabled schedule's due time that has no run.

    Returns the runs this call made (the due times other processes took are skipped).
    """
    fired = []
    for schedule in repos.list_enabled_schedules(session):
        due = due_time(schedule.cron, schedule.timezone, now=now, since=schedule.updated_at)
        if due is None or repos.find_run(session, schedule_id=schedule.id, due_at=due):
            continue
        run = fire_schedule(
            session, schedule=schedule, due_at=due, settings=settings, queue=queue, store=store
        )
        fired += [run] if run is not None else []
    session.rollback()
    return fired
