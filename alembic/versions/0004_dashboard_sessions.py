"""Dashboard sign-ins (``web_sessions``) and when each API key was last used.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 23:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade the schema."""
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name=op.f("fk_web_sessions_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("hash", name=op.f("uq_web_sessions_hash")),
    )
    op.create_index(op.f("ix_web_sessions_key_id"), "web_sessions", ["key_id"], unique=False)
    # The jobs page filters a team's jobs by model and by submitter, newest first.
    op.create_index("ix_jobs_team_id_model_id", "jobs", ["team_id", "model_id", "created_at"])
    op.create_index(
        "ix_jobs_team_id_created_by_key_id", "jobs", ["team_id", "created_by_key_id", "created_at"]
    )


def downgrade() -> None:
    """Downgrade the schema."""
    op.drop_index("ix_jobs_team_id_created_by_key_id", table_name="jobs")
    op.drop_index("ix_jobs_team_id_model_id", table_name="jobs")
    op.drop_index(op.f("ix_web_sessions_key_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("last_used_at")
