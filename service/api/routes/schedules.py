"""``/v1/schedules``: recurring jobs (nightly compression), fired by ``mpq beat``.

Team-scoped like jobs: another team's schedule id answers 404. Everything a schedule
names is checked before 201 with the code ``POST /v1/jobs`` uses (see
:mod:`service.domain.schedules`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from service.api.deps import BlobsDep, CurrentKey, CurrentTeam, SessionDep, SettingsDep
from service.api.params import Limit, ScheduleId, Skip
from service.api.responses import errors
from service.db import repos
from service.db.base import utcnow
from service.db.models import Schedule
from service.domain import create_schedule, schedule_runs, update_schedule
from service.domain.cron import next_time
from service.schemas_schedules import (
    ModelRef,
    ScheduleCreate,
    SchedulePublic,
    ScheduleRunPublic,
    ScheduleRunsPublic,
    SchedulesPublic,
    ScheduleUpdate,
)

__all__ = ["router"]

router = APIRouter(prefix="/schedules", tags=["schedules"], responses=errors(401, 422, 429, 503))


def public(row: Schedule) -> SchedulePublic:
    """The API view of schedule ``row`` (its next due time computed now)."""
    later = max(utcnow(), row.updated_at)
    return SchedulePublic(
        id=row.id,
        name=row.name,
        cron=row.cron,
        timezone=row.timezone,
        model=ModelRef(name=row.model_name, alias=row.model_alias),
        dataset_id=row.dataset_id,
        job=row.config,
        enabled=row.enabled,
        next_run_at=next_time(row.cron, row.timezone, after=later) if row.enabled else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SchedulePublic,
    responses=errors(404, 409),
)
def post_schedule(
    body: ScheduleCreate,
    session: SessionDep,
    team: CurrentTeam,
    key: CurrentKey,
    settings: SettingsDep,
    blobs: BlobsDep,
) -> SchedulePublic:
    """Create a schedule: `cron` (5 fields) in `timezone`, model by name (and alias), job options.

    Checked before 201: the cron parses and the time zone exists (`invalid_schedule`),
    the alias is well formed (`invalid_alias`), the model, alias and dataset are the
    team's (404), and the job is one `POST /v1/jobs` would accept for the version the
    alias names now (`invalid_plan`, `dataset_model_mismatch`, ...). A taken name: 409.
    """
    row = create_schedule(
        session,
        team=team,
        name=body.name,
        cron=body.cron,
        timezone=body.timezone,
        model_name=body.model.name,
        model_alias=body.model.alias,
        dataset_id=body.dataset_id,
        spec=body.job.spec(),
        settings=settings,
        enabled=body.enabled,
        store=blobs,
        created_by=key,
    )
    return public(row)


@router.get("", response_model=SchedulesPublic)
def list_schedules(
    session: SessionDep, team: CurrentTeam, skip: Skip = 0, limit: Limit = 20
) -> SchedulesPublic:
    """The team's schedules, newest first (`skip`/`limit`; `count` is the total)."""
    rows = repos.list_schedules(session, team=team, skip=skip, limit=limit)
    count = repos.count_schedules(session, team=team)
    return SchedulesPublic(data=[public(r) for r in rows], count=count)


@router.get("/{schedule_id}", response_model=SchedulePublic, responses=errors(404))
def get_schedule(schedule_id: ScheduleId, session: SessionDep, team: CurrentTeam) -> SchedulePublic:
    """One of the team's schedules (another team's id: 404)."""
    return public(repos.get_schedule(session, team=team, schedule_id=schedule_id))


@router.patch("/{schedule_id}", response_model=SchedulePublic, responses=errors(404, 409))
def patch_schedule(
    schedule_id: ScheduleId,
    body: ScheduleUpdate,
    session: SessionDep,
    team: CurrentTeam,
    settings: SettingsDep,
    blobs: BlobsDep,
) -> SchedulePublic:
    """Change any field (`job` and `model` are replaced whole; null: unchanged).

    Checked as on creation. Any change restarts the catch-up window: due times before it
    are never fired.
    """
    given = body.model_dump(exclude_none=True)  # null: unchanged, as a field left out
    changes: dict[str, Any] = {
        k: given[k] for k in ("name", "cron", "timezone", "dataset_id", "enabled") if k in given
    }
    if body.model is not None:
        changes |= {"model_name": body.model.name, "model_alias": body.model.alias}
    if body.job is not None:
        changes["spec"] = body.job.spec()
    row = update_schedule(
        session,
        team=team,
        schedule_id=schedule_id,
        changes=changes,
        settings=settings,
        store=blobs,
    )
    return public(row)


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(404),
)
def delete_schedule(schedule_id: ScheduleId, session: SessionDep, team: CurrentTeam) -> Response:
    """Delete a schedule and its runs; the jobs it made stay (their `schedule_id` null)."""
    row = repos.get_schedule(session, team=team, schedule_id=schedule_id)
    repos.delete_schedule(session, schedule=row)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{schedule_id}/runs", response_model=ScheduleRunsPublic, responses=errors(404))
def list_runs(
    schedule_id: ScheduleId,
    session: SessionDep,
    team: CurrentTeam,
    skip: Skip = 0,
    limit: Limit = 20,
) -> ScheduleRunsPublic:
    """The schedule's runs, latest due time first: `due_at`, `job_id`, job status, error."""
    rows, count = schedule_runs(session, team=team, schedule_id=schedule_id, skip=skip, limit=limit)
    data = [
        ScheduleRunPublic.model_validate(run).model_copy(
            update={"job_status": None if st is None else str(st.value)}
        )
        for run, st in rows
    ]
    return ScheduleRunsPublic(data=data, count=count)
