"""Nightly compression: model aliases, schedules and their runs, webhooks and deliveries;
jobs learn their schedule, warm-start source, regression and when webhooks heard of them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 22:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _key_fk(table: str, column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["api_keys.id"], name=op.f(f"fk_{table}_{column}_api_keys"), ondelete="SET NULL"
    )


def _team_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["team_id"], ["teams.id"], name=op.f(f"fk_{table}_team_id_teams"), ondelete="CASCADE"
    )


def upgrade() -> None:
    """Upgrade the schema."""
    op.create_table(
        "model_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by_key_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_model_aliases_model_id_models"),
            ondelete="CASCADE",
        ),
        _team_fk("model_aliases"),
        _key_fk("model_aliases", "updated_by_key_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_aliases")),
        sa.UniqueConstraint(
            "team_id", "name", "alias", name=op.f("uq_model_aliases_team_id_name_alias")
        ),
    )
    op.create_index(op.f("ix_model_aliases_model_id"), "model_aliases", ["model_id"])

    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("cron", sa.String(length=255), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=255), nullable=False),
        sa.Column("model_alias", sa.String(length=64), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("created_by_key_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_schedules_dataset_id_datasets")
        ),
        _team_fk("schedules"),
        _key_fk("schedules", "created_by_key_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("team_id", "name", name=op.f("uq_schedules_team_id_name")),
    )
    op.create_index(op.f("ix_schedules_dataset_id"), "schedules", ["dataset_id"])
    op.create_index(op.f("ix_schedules_enabled"), "schedules", ["enabled"])

    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("due_at", _TS, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_schedule_runs_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_runs_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_runs")),
        sa.UniqueConstraint(
            "schedule_id", "due_at", name=op.f("uq_schedule_runs_schedule_id_due_at")
        ),
    )
    op.create_index(op.f("ix_schedule_runs_job_id"), "schedule_runs", ["job_id"])

    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(length=255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by_key_id", sa.Integer(), nullable=True),
        _team_fk("webhooks"),
        _key_fk("webhooks", "created_by_key_id"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index(op.f("ix_webhooks_team_id"), "webhooks", ["team_id"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_webhook_deliveries_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["webhook_id"],
            ["webhooks.id"],
            name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
        sa.UniqueConstraint(
            "webhook_id",
            "event",
            "job_id",
            name=op.f("uq_webhook_deliveries_webhook_id_event_job_id"),
        ),
    )
    op.create_index(op.f("ix_webhook_deliveries_job_id"), "webhook_deliveries", ["job_id"])
    op.create_index(
        op.f("ix_webhook_deliveries_status_next_attempt_at"),
        "webhook_deliveries",
        ["status", "next_attempt_at"],
    )

    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("schedule_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("warm_start_job_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("regression", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("notified_at", _TS, nullable=True))
        batch.create_foreign_key(
            op.f("fk_jobs_schedule_id_schedules"),
            "schedules",
            ["schedule_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            op.f("fk_jobs_warm_start_job_id_jobs"),
            "jobs",
            ["warm_start_job_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_jobs_schedule_id"), ["schedule_id"])
        batch.create_index(op.f("ix_jobs_notified_at"), ["notified_at"])
    # Jobs that ended before webhooks existed have nothing to send: mark them notified, so
    # the workers' sweep does not walk the whole history once.
    op.execute(
        "UPDATE jobs SET notified_at = COALESCE(finished_at, created_at) "
        "WHERE status IN ('succeeded', 'failed', 'cancelled')"
    )


def downgrade() -> None:
    """Downgrade the schema."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index(op.f("ix_jobs_notified_at"))
        batch.drop_index(op.f("ix_jobs_schedule_id"))
        batch.drop_constraint(op.f("fk_jobs_warm_start_job_id_jobs"), type_="foreignkey")
        batch.drop_constraint(op.f("fk_jobs_schedule_id_schedules"), type_="foreignkey")
        batch.drop_column("notified_at")
        batch.drop_column("regression")
        batch.drop_column("warm_start_job_id")
        batch.drop_column("schedule_id")
    op.drop_index(op.f("ix_webhook_deliveries_status_next_attempt_at"), "webhook_deliveries")
    op.drop_index(op.f("ix_webhook_deliveries_job_id"), "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index(op.f("ix_webhooks_team_id"), "webhooks")
    op.drop_table("webhooks")
    op.drop_index(op.f("ix_schedule_runs_job_id"), "schedule_runs")
    op.drop_table("schedule_runs")
    op.drop_index(op.f("ix_schedules_enabled"), "schedules")
    op.drop_index(op.f("ix_schedules_dataset_id"), "schedules")
    op.drop_table("schedules")
    op.drop_index(op.f("ix_model_aliases_model_id"), "model_aliases")
    op.drop_table("model_aliases")
