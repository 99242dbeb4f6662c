"""API schemas of the model registry (versions, aliases) and of schedules and their runs.

Kept apart from :mod:`service.schemas` (already past its size); the job options a
schedule submits are :class:`service.schemas.JobOptions`, the very fields of
``POST /v1/jobs`` without the ids, read by the same ``JobSpec.from_json``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.db.repos import MAX_ID
from service.schemas import JobOptions, ModelPublic, ModelRef

__all__ = [
    "AliasUpdate",
    "ModelRef",
    "ModelVersionsPublic",
    "ScheduleCreate",
    "SchedulePublic",
    "ScheduleRunPublic",
    "ScheduleRunsPublic",
    "ScheduleUpdate",
    "SchedulesPublic",
]

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class AliasUpdate(BaseModel):
    """``PUT /v1/models/{name}/aliases/{alias}``: the version the alias is to name."""

    model_config = _STRICT

    version: int = Field(ge=1, lt=MAX_ID + 1, description="a version of the model, 1, 2, ...")


class ModelVersionsPublic(BaseModel):
    """A model name's versions, newest first, each with the aliases naming it."""

    name: str
    data: list[ModelPublic]
    count: int


class ScheduleCreate(BaseModel):
    """A recurring job: when (``cron`` in ``timezone``), on what, and the job options."""

    model_config = _STRICT

    name: str = Field(min_length=1, max_length=255, examples=["nightly-resnet"])
    cron: str = Field(
        max_length=255,
        description="5 fields: minute hour day-of-month month day-of-week",
        examples=["0 2 * * *"],
    )
    timezone: str = Field(
        default="UTC", max_length=64, description="IANA time zone the cron is read in"
    )
    model: ModelRef
    dataset_id: int = Field(ge=1, lt=MAX_ID + 1, description="the team's dataset for the model")
    job: JobOptions = Field(
        default_factory=JobOptions, description="the options of POST /v1/jobs, without the ids"
    )
    enabled: bool = True


class ScheduleUpdate(BaseModel):
    """``PATCH /v1/schedules/{id}``: the fields to change (``job`` is replaced whole)."""

    model_config = _STRICT

    name: str | None = Field(default=None, min_length=1, max_length=255)
    cron: str | None = Field(default=None, max_length=255)
    timezone: str | None = Field(default=None, max_length=64)
    model: ModelRef | None = None
    dataset_id: int | None = Field(default=None, ge=1, lt=MAX_ID + 1)
    job: JobOptions | None = None
    enabled: bool | None = None


class SchedulePublic(BaseModel):
    """A schedule; ``job`` is the job spec every run submits (``search.JobSpec`` JSON)."""

    id: int
    name: str
    cron: str
    timezone: str
    model: ModelRef
    dataset_id: int
    job: dict[str, Any]
    enabled: bool
    next_run_at: datetime | None = Field(description="the next due time (null: disabled)")
    created_at: datetime
    updated_at: datetime = Field(description="the last change; due times before it are never fired")


class SchedulesPublic(BaseModel):
    """A page of the team's schedules, newest first, and how many it has in all."""

    data: list[SchedulePublic]
    count: int


class ScheduleRunPublic(BaseModel):
    """One due time of a schedule: the job it submitted, or why it submitted none."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    due_at: datetime
    created_at: datetime
    job_id: int | None
    job_status: str | None = None
    error_code: str | None
    error_message: str | None


class ScheduleRunsPublic(BaseModel):
    """A page of a schedule's runs, latest due time first, and how many it has."""

    data: list[ScheduleRunPublic]
    count: int
