"""ORM models: the service's tables. API schemas live apart from these (``service/api``).

Every row that belongs to a team carries ``team_id``; every query a route makes filters
on it, which is how one team never sees another's rows. ``created_by_key_id`` records
which API key submitted a row (``NULL`` for rows made by the admin CLI or whose key was
deleted). JSON columns hold documents the engine and search already define (inventory,
search configuration, results); their shape is validated at the API, not here.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Enum, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db.base import Base, utcnow

__all__ = [
    "ApiKey",
    "Artifact",
    "Dataset",
    "DeliveryStatus",
    "Job",
    "JobStatus",
    "Model",
    "ModelAlias",
    "ModelKind",
    "Schedule",
    "ScheduleRun",
    "Team",
    "WebSession",
    "Webhook",
    "WebhookDelivery",
]

NAME_LENGTH = 255
SHA256_LENGTH = 64


def _values(cls: type[enum.Enum]) -> list[str]:
    return [str(m.value) for m in cls]


class JobStatus(enum.StrEnum):
    """Where a job is in its life: queued → preparing → running → one of three final states.

    ``preparing``: a worker took the job and is loading the model, measuring the layers'
    sensitivity and seeding the study; ``running``: trials run (and, last, the finalize).
    """

    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ModelKind(enum.StrEnum):
    """The format a model was uploaded in."""

    PT2 = "pt2"
    ONNX = "onnx"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # VARCHAR + CHECK rather than a native PostgreSQL ENUM: adding a state later is a
    # plain migration, and downgrades leave no orphan type behind.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=_values,
        validate_strings=True,
    )


class Team(Base):
    """A tenant: owns API keys, models, datasets and jobs."""

    __tablename__ = "teams"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A team's bearer key. Only ``sha256(secret)`` is stored, never the secret.

    ``prefix`` (the secret's first characters) is shown to users to tell keys apart and
    narrows the lookup; a key with ``revoked_at`` set authenticates nobody.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    hash: Mapped[str] = mapped_column(String(SHA256_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    """When the key last authenticated a request (to the minute: written at most once a
    minute per key, so that a polling client does not write on every request)."""


class WebSession(Base):
    """A dashboard sign-in: the browser holds a random token in a cookie, the row its sha256.

    A session acts as the API key it was opened with: revoking the key ends it, and so
    does signing out (the row is deleted) or ``expires_at`` passing. ``csrf`` is the
    token every form of the session must carry.
    """

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    hash: Mapped[str] = mapped_column(String(SHA256_LENGTH), unique=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


def _created_by() -> Mapped[int | None]:
    return mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))


class Model(Base):
    """An uploaded model: ``version`` counts up from 1 per (team, name).

    ``blob_path`` keeps the file as uploaded (for the user's records); ``ir_blob_path``
    the IR the isolated importer made of it, which is all the workers ever load.
    """

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("team_id", "name", "version"),
        Index(None, "team_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    version: Mapped[int]
    kind: Mapped[ModelKind] = mapped_column(_enum(ModelKind, "model_kind"))
    sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob_path: Mapped[str] = mapped_column(String(1024))
    ir_blob_path: Mapped[str | None] = mapped_column(String(1024))
    inventory: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = _created_by()
    created_by: Mapped[ApiKey | None] = relationship(lazy="joined")


class Dataset(Base):
    """An uploaded calibration/evaluation data file; ``inputs`` maps input name → spec.

    ``model_id`` is the model whose inputs the file was validated against at upload.
    """

    __tablename__ = "datasets"
    __table_args__ = (Index(None, "team_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob_path: Mapped[str] = mapped_column(String(1024))
    num_samples: Mapped[int]
    inputs: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_key_id: Mapped[int | None] = _created_by()
    created_by: Mapped[ApiKey | None] = relationship(lazy="joined")


class Job(Base):
    """A search job and its progress.

    ``config`` is the job spec as submitted (``search.JobSpec.to_json()``, parallelism
    capped; rows older than the spec hold the search configuration, which
    ``JobSpec.from_stored`` reads too); ``study_name`` names its Optuna study in the same
    database; ``baseline``/``best``/``result`` are filled in as the job runs; a failed
    job keeps the :class:`engine.errors.MPQError` code and message it failed with.

    ``heartbeat_at`` is written every few seconds by whichever task works on the job
    (prepare, trial runners, finalize): an active job whose heartbeat stops is resumed
    by the workers' recovery sweep (``workers/recovery.py``). ``finalize_claimed_at``
    is set once, by the runner that saw the budget spent, so one finalize is sent.

    ``progress`` is what the job is doing, written by its tasks (at most about once a
    second): ``{"phase", "step", "done", "total", "eta_s", "updated_at"}``, built and
    documented by :func:`service.progress.progress_doc`; NULL until a worker takes
    the job, and kept as last written once it ends.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index(None, "team_id", "status"),
        Index(None, "team_id", "created_at"),
        Index(None, "status"),
        # the dashboard's jobs page filters by model and by submitter, newest first
        Index("ix_jobs_team_id_model_id", "team_id", "model_id", "created_at"),
        Index("ix_jobs_team_id_created_by_key_id", "team_id", "created_by_key_id", "created_at"),
        # the workers' webhook sweep looks for final jobs not yet notified
        Index(None, "notified_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    status: Mapped[JobStatus] = mapped_column(
        _enum(JobStatus, "job_status"), default=JobStatus.QUEUED
    )
    config: Mapped[dict[str, Any]]
    study_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    trials_done: Mapped[int] = mapped_column(default=0)
    trials_total: Mapped[int]
    baseline: Mapped[dict[str, Any] | None]
    best: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finalize_claimed_at: Mapped[datetime | None]
    progress: Mapped[dict[str, Any] | None]
    created_by_key_id: Mapped[int | None] = _created_by()
    created_by: Mapped[ApiKey | None] = relationship(lazy="joined")
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), index=True
    )
    """The schedule that submitted the job (NULL: submitted by hand, or schedule deleted)."""
    warm_start_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL")
    )
    """The earlier succeeded job whose front, plan and sensitivity seed this one's study."""
    regression: Mapped[dict[str, Any] | None]
    """A scheduled job's comparison with its schedule's last succeeded run at the same
    target (what got worse and by how much); NULL when not compared."""
    notified_at: Mapped[datetime | None]
    """When the job's final state was handed to the team's webhooks (NULL: not yet)."""


class Artifact(Base):
    """A file a job produced (``model.mpq``, ``result.json``, plots), stored as a blob."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    blob_path: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(SHA256_LENGTH))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# The nightly-compression tables live in their own module; registered on the same Base.
from service.db.models_nightly import (  # noqa: E402
    DeliveryStatus,
    ModelAlias,
    Schedule,
    ScheduleRun,
    Webhook,
    WebhookDelivery,
)
