"""The model registry: versions of a model name, aliases moved between them, resolution.

A model *name* has versions 1, 2, ... (each upload of the name is the next one); an
*alias* (``production``, ``candidate``) names one version and is moved explicitly;
``latest`` always means the highest version. Schedules and jobs may name a model by
name and alias; :func:`resolve_model` turns that into the version row, at the time of
the call (a schedule's alias is resolved each time it fires).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.db import repos
from service.db.models import ApiKey, Model, Team
from service.db.repos import check_label
from service.db.repos.aliases import LATEST, check_alias
from service.errors import InvalidNameError, NotFoundError

__all__ = ["LATEST", "delete_alias", "model_versions", "resolve_model", "set_alias"]


def _named(name: str) -> str:
    """``name``, or :class:`NotFoundError` if no model can have it (no query is sent:
    PostgreSQL refuses NUL characters rather than match nothing)."""
    try:
        check_label(name, what="model")
    except InvalidNameError:
        raise _unknown(name) from None
    return name


def _unknown(name: str) -> NotFoundError:
    return NotFoundError(
        f"no model named {name[:255]!r}; upload one with POST /v1/models, "
        "or list yours with GET /v1/models"
    )


def model_versions(session: Session, *, team: Team, name: str) -> list[tuple[Model, list[str]]]:
    """``team``'s versions of ``name``, newest first, each with the aliases naming it.

    Raises:
        NotFoundError: ``team`` has no model of that name.
    """
    rows = repos.list_model_versions(session, team=team, name=_named(name))
    if not rows:
        raise _unknown(name)
    aliases = repos.list_aliases(session, model_ids=[r.id for r in rows])
    session.rollback()  # end the read transaction (rows stay loaded)
    return [(r, aliases[r.id]) for r in rows]


def resolve_model(session: Session, *, team: Team, name: str, alias: str | None = None) -> Model:
    """The version of ``team``'s model ``name`` that ``alias`` names (None: the latest).

    Raises:
        InvalidAliasError: ``alias`` breaks the alias rules (``latest`` is accepted here).
        NotFoundError: no model of that name, or no such alias of it.
    """
    if alias is not None and alias != LATEST:
        check_alias(alias)
    model = repos.find_model_version(session, team=team, name=_named(name), alias=alias)
    if model is not None:
        return model
    if (
        alias is None
        or alias == LATEST
        or not repos.list_model_versions(session, team=team, name=name)
    ):
        raise _unknown(name)
    raise NotFoundError(
        f"model {name[:255]!r} has no alias {alias!r}; set it with "
        f"PUT /v1/models/{{name}}/aliases/{alias}, or list the versions with "
        "GET /v1/models/{name}/versions"
    )


def set_alias(
    session: Session,
    *,
    team: Team,
    name: str,
    alias: str,
    version: int,
    updated_by: ApiKey | None = None,
) -> Model:
    """Point ``alias`` of ``team``'s model ``name`` at ``version``; return that version.

    Raises:
        InvalidAliasError: ``alias`` breaks the alias rules (checked first).
        NotFoundError: no model of that name, or no such version.
    """
    check_alias(alias)
    model = repos.find_model_version(session, team=team, name=_named(name), version=version)
    if model is None:
        if not repos.list_model_versions(session, team=team, name=name):
            raise _unknown(name)
        raise NotFoundError(
            f"model {name[:255]!r} has no version {version}; list them with "
            "GET /v1/models/{name}/versions"
        )
    repos.set_alias(session, team=team, model=model, alias=alias, updated_by=updated_by)
    return model


def delete_alias(session: Session, *, team: Team, name: str, alias: str) -> None:
    """Remove ``alias`` of ``team``'s model ``name`` (committed).

    Raises:
        InvalidAliasError: ``alias`` breaks the alias rules.
        NotFoundError: the model has no such alias.
    """
    check_alias(alias)
    if not repos.delete_alias(session, team=team, name=_named(name), alias=alias):
        raise NotFoundError(
            f"model {name[:255]!r} has no alias {alias!r}; list its versions and aliases "
            "with GET /v1/models/{name}/versions"
        )
