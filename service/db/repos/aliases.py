"""Model aliases and versions: a team's named pointers from a model name to one version.

As in MLflow's model registry, ``production`` of model ``resnet`` names one version row;
moving the alias is one upsert. ``latest`` is not stored: it always means the highest
version (:func:`find_model_version` with ``alias=None``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import ApiKey, Model, ModelAlias, Team
from service.db.session import end_reads
from service.errors import ConflictError, InvalidAliasError

__all__ = [
    "LATEST",
    "check_alias",
    "delete_alias",
    "find_model_version",
    "list_aliases",
    "list_model_versions",
    "set_alias",
]

LATEST = "latest"
"""The reserved alias: the model's highest version, never stored."""
ALIAS = re.compile(r"[a-z0-9_-]{1,64}")
"""An alias: 1 to 64 lowercase ASCII letters, digits, ``_`` or ``-``, not all digits."""
_ATTEMPTS = 3


def check_alias(alias: str) -> None:
    """Refuse an alias that does not fit :data:`ALIAS`, is all digits, or is ``latest``.

    Raises:
        InvalidAliasError: with the rule the alias broke.
    """
    shown = alias[:80]
    if not ALIAS.fullmatch(alias) or alias.isdigit():
        raise InvalidAliasError(
            f"invalid alias {shown!r}: use 1 to 64 lowercase letters, digits, '_' or '-', "
            "not all digits (a number would read as a version), such as 'production'"
        )
    if alias == LATEST:
        raise InvalidAliasError(
            "alias 'latest' is reserved: it always means the highest version; "
            "choose another name, such as 'production'"
        )


def list_model_versions(session: Session, *, team: Team, name: str) -> list[Model]:
    """``team``'s versions of model ``name``, newest (highest version) first."""
    query = select(Model).where(Model.team_id == team.id, Model.name == name)
    rows = list(session.scalars(query.order_by(Model.version.desc())))
    end_reads(session)
    return rows


def find_model_version(
    session: Session, *, team: Team, name: str, alias: str | None = None, version: int | None = None
) -> Model | None:
    """The version of ``team``'s model ``name`` that ``alias`` or ``version`` names.

    Neither given (or ``alias`` ``latest``): the highest version. None when there is no
    such model, alias or version.
    """
    query = select(Model).where(Model.team_id == team.id, Model.name == name)
    if alias is not None and alias != LATEST:
        query = query.join(ModelAlias, ModelAlias.model_id == Model.id).where(
            ModelAlias.team_id == team.id, ModelAlias.name == name, ModelAlias.alias == alias
        )
    elif version is not None:
        query = query.where(Model.version == version)
    else:
        top = select(func.max(Model.version)).where(Model.team_id == team.id, Model.name == name)
        query = query.where(Model.version == top.scalar_subquery())
    return session.scalars(query).one_or_none()


def list_aliases(session: Session, *, model_ids: Iterable[int]) -> dict[int, list[str]]:
    """The aliases pointing at each of ``model_ids`` (sorted), by model id."""
    ids = list(model_ids)
    found: dict[int, list[str]] = {i: [] for i in ids}
    if not ids:
        return found
    query = select(ModelAlias.model_id, ModelAlias.alias).where(ModelAlias.model_id.in_(ids))
    for model_id, alias in session.execute(query.order_by(ModelAlias.alias)):
        found[model_id].append(alias)
    return found


def set_alias(
    session: Session, *, team: Team, model: Model, alias: str, updated_by: ApiKey | None = None
) -> ModelAlias:
    """Point ``alias`` of ``model``'s name at ``model`` (create or move it; committed).

    Two concurrent first settings collide on the unique (team, name, alias); the loser
    retries as a move. Precondition: ``session`` holds no other pending changes.

    Raises:
        InvalidAliasError: see :func:`check_alias`.
        ConflictError: no attempt went through (persistent contention).
    """
    check_alias(alias)
    for _ in range(_ATTEMPTS):
        row = session.scalars(
            select(ModelAlias).where(
                ModelAlias.team_id == team.id,
                ModelAlias.name == model.name,
                ModelAlias.alias == alias,
            )
        ).one_or_none()
        if row is None:
            row = ModelAlias(team_id=team.id, name=model.name, alias=alias)
            session.add(row)
        row.model_id, row.updated_at = model.id, utcnow()
        row.updated_by_key_id = None if updated_by is None else updated_by.id
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return row
    raise ConflictError(f"alias {alias!r} of model {model.name!r} is being changed; try again")


def delete_alias(session: Session, *, team: Team, name: str, alias: str) -> bool:
    """Remove ``alias`` of ``team``'s model ``name``; False if there was none (committed)."""
    result = session.execute(
        delete(ModelAlias).where(
            ModelAlias.team_id == team.id, ModelAlias.name == name, ModelAlias.alias == alias
        )
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0))
