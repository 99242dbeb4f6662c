"""Models: uploaded model files of a team, versioned per (team, name)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from service.db.models import ApiKey, Model, ModelKind, Team
from service.db.repos._names import check_label
from service.db.repos._scoped import Scoped
from service.errors import ConflictError

__all__ = ["count_models", "create_model", "find_model", "get_model", "list_models"]

# Concurrent uploads of one model name can race for a version number; retry this often.
VERSION_ATTEMPTS = 5

MODELS = Scoped(
    Model,
    owner="team_id",
    key="id",
    order=(Model.created_at.desc(), Model.id.desc()),
    missing=lambda _, model_id: f"no model with id {model_id}; list yours with GET /v1/models",
)


def create_model(
    session: Session,
    *,
    team: Team,
    name: str,
    kind: ModelKind,
    sha256: str,
    size_bytes: int,
    blob_path: str,
    inventory: dict[str, Any],
    ir_blob_path: str | None = None,
    created_by: ApiKey | None = None,
) -> Model:
    """Record an uploaded model as the next version of ``name`` in ``team``.

    Versions count 1, 2, ... per (team, name). Two concurrent uploads that pick the
    same number collide on commit -- on the unique constraint, or on SQLite on the
    write lock of a stale snapshot -- and the loser rolls back and retries with a
    fresh read. Hence the precondition: ``session`` holds no other pending changes.

    Raises:
        InvalidNameError: ``name`` is empty, too long or has control characters.
        ConflictError: no version could be allocated after several attempts.
    """
    check_label(name, what="model")
    sqlite = session.get_bind().dialect.name == "sqlite"
    for _ in range(VERSION_ATTEMPTS):
        latest = session.scalar(
            select(func.max(Model.version)).where(Model.team_id == team.id, Model.name == name)
        )
        row = Model(
            team_id=team.id,
            name=name,
            version=(latest or 0) + 1,
            kind=kind,
            sha256=sha256,
            size_bytes=size_bytes,
            blob_path=blob_path,
            ir_blob_path=ir_blob_path,
            inventory=inventory,
            created_by=created_by,
        )
        session.add(row)
        try:
            session.commit()
        except (IntegrityError, OperationalError) as exc:
            session.rollback()
            if isinstance(exc, OperationalError) and not sqlite:
                raise
            continue
        return row
    raise ConflictError(f"could not allocate a version for model {name!r}; try again")


def find_model(session: Session, *, team: Team, model_id: int) -> Model | None:
    """Model ``model_id`` if it belongs to ``team``, else ``None`` (another team's too)."""
    return MODELS.find(session, team.id, model_id)


def get_model(session: Session, *, team: Team, model_id: int) -> Model:
    """Model ``model_id`` of ``team``; :class:`NotFoundError` if it is not ``team``'s."""
    return MODELS.get(session, team.id, model_id)


def list_models(session: Session, *, team: Team, skip: int = 0, limit: int = 100) -> list[Model]:
    """``team``'s models, newest first, ``limit`` of them after the first ``skip``."""
    return MODELS.list(session, team.id, skip=skip, limit=limit)


def count_models(session: Session, *, team: Team) -> int:
    """How many models ``team`` has."""
    return MODELS.count(session, team.id)
