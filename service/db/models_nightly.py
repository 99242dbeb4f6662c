"""ORM models of nightly compression: model aliases, schedules and their runs, webhooks.

Re-exported by :mod:`service.db.models` (import them from there). Foreign keys name
tables by string, so this module needs none of the core classes.

- ``model_aliases``: a team's named pointer (``production``, ``candidate``) from a model
  *name* to one of its versions, as in MLflow's registry; one row per (team, name, alias).
- ``schedules``: a cron expression in a time zone, the model to compress named by name
  and alias (no alias: the latest version when the schedule fires), a dataset and the
  job spec (``search.JobSpec.to_json()``) every run submits.
- ``schedule_runs``: one row per (schedule, due time), inserted by whichever beat process
  fires the schedule first. The unique constraint is what makes a due time create one job
  even with two beat processes running or a beat restarted mid-minute.
- ``webhooks`` and ``webhook_deliveries``: a team's receivers and every event sent to
  each, one row per (webhook, event, job) so an event is delivered once.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.db.base import Base, utcnow

__all__ = [
    "ALIAS_LENGTH",
    "DeliveryStatus",
    "ModelAlias",
    "Schedule",
    "ScheduleRun",
    "Webhook",
    "WebhookDelivery",
]

NAME_LENGTH = 255
ALIAS_LENGTH = 64
URL_LENGTH = 2048


class DeliveryStatus(enum.StrEnum):
    """A webhook delivery: ``pending`` (attempts left), ``delivered`` (a 2xx), ``failed``."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _created_by() -> Mapped[int | None]:
    return mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))


class ModelAlias(Base):
    """``alias`` of the team's model ``name`` points at version row ``model_id``."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("team_id", "name", "alias"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    alias: Mapped[str] = mapped_column(String(ALIAS_LENGTH))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by_key_id: Mapped[int | None] = _created_by()


class Schedule(Base):
    """A recurring job: ``cron`` (five fields) read in ``timezone`` (an IANA name).

    ``model_alias`` NULL means the latest version of ``model_name`` at run time.
    ``config`` is the job spec each run submits. ``enabled`` false: beat skips it.
    """

    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("team_id", "name"), Index(None, "enabled"))

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    cron: Mapped[str] = mapped_column(String(NAME_LENGTH))
    timezone: Mapped[str] = mapped_column(String(ALIAS_LENGTH))
    model_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    model_alias: Mapped[str | None] = mapped_column(String(ALIAS_LENGTH))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    config: Mapped[dict[str, Any]]
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = _created_by()


class ScheduleRun(Base):
    """Schedule ``schedule_id`` fired for ``due_at`` (UTC): the job it made, or why none.

    ``job_id`` NULL with ``error_code`` set: the run could not submit a job (no model of
    that name or alias, a quota); the row still marks the due time as taken.
    """

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    due_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)


class Webhook(Base):
    """A team's receiver of job events (``events``: a list of event names).

    ``secret`` keys the HMAC-SHA256 signature of every delivery; it is kept as given
    (signing needs it) and never shown again after the webhook is created.
    """

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(URL_LENGTH))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(NAME_LENGTH))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = _created_by()


class WebhookDelivery(Base):
    """Event ``event`` of job ``job_id`` sent (or being sent) to webhook ``webhook_id``.

    ``payload`` is the JSON document posted (the body is its canonical encoding);
    ``attempts`` counts the tries so far, ``response_code`` the last HTTP status (NULL:
    no answer), ``next_attempt_at`` when a pending delivery is tried again.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event", "job_id"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), index=True
    )
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    response_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
