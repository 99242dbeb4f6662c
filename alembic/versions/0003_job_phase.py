"""Jobs' preparing state and progress document (the phase a worker reports).

``jobs.status`` is a VARCHAR with a named CHECK constraint (``ck_jobs_job_status``), not
a native PostgreSQL ENUM: the constraint is dropped and made again with the new state
(on SQLite by copying the table, Alembic's batch mode). Downgrading first moves
preparing jobs back to queued, the state they had before this revision existed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 16:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("queued", "running", "succeeded", "failed", "cancelled")
AFTER = ("queued", "preparing", "running", "succeeded", "failed", "cancelled")
CHECK = "ck_jobs_job_status"


def _status_check(batch: BatchOperations, states: tuple[str, ...]) -> None:
    batch.drop_constraint(op.f(CHECK), type_="check")
    batch.create_check_constraint(op.f(CHECK), sa.column("status").in_(states))


def upgrade() -> None:
    """Upgrade the schema."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=True))
        _status_check(batch, AFTER)


def downgrade() -> None:
    """Downgrade the schema."""
    jobs = sa.table("jobs", sa.column("status", sa.String(16)))
    op.execute(jobs.update().where(jobs.c.status == "preparing").values(status="queued"))
    with op.batch_alter_table("jobs") as batch:
        _status_check(batch, BEFORE)
        batch.drop_column("progress")
