"""Job heartbeats and finalize claims (crash recovery), models' IR blobs, datasets' model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 04:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("finalize_claimed_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("ir_blob_path", sa.String(length=1024), nullable=True))
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("model_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_datasets_model_id"), ["model_id"], unique=False)
        batch.create_foreign_key(
            batch.f("fk_datasets_model_id_models"), "models", ["model_id"], ["id"],
            ondelete="SET NULL",
        )  # fmt: skip


def downgrade() -> None:
    """Downgrade the schema."""
    with op.batch_alter_table("datasets") as batch:
        batch.drop_constraint(batch.f("fk_datasets_model_id_models"), type_="foreignkey")
        batch.drop_index(batch.f("ix_datasets_model_id"))
        batch.drop_column("model_id")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("ir_blob_path")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("finalize_claimed_at")
        batch.drop_column("heartbeat_at")
