"""FastAPI dependencies: settings, a database session per request, the caller's team.

Routes declare what they need with these ``Annotated`` aliases; tests override
:func:`get_settings_dep` (``app.dependency_overrides``) instead of editing the environment.

A request's session takes a pooled connection only when it first queries and gives it
back at each commit. Authentication reads the key in a transaction of its own and commits
it before the route runs, so a route that streams an upload or imports a model (minutes,
for a slow client) holds no connection meanwhile: it takes one again only for its final
short database work.

The ones that only read a value already at hand are ``async``: FastAPI runs a sync
dependency in a threadpool thread, a hop that costs more than the work under load.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.api.slots import Limits
from service.blobs import BlobStore
from service.db.models import ApiKey, Team
from service.db.repos import find_key, mark_key_used
from service.errors import UnauthorizedError
from service.settings import Settings

__all__ = [
    "BlobsDep",
    "CurrentKey",
    "CurrentTeam",
    "LimitsDep",
    "QueueDep",
    "SessionDep",
    "SettingsDep",
    "TrustUploadsDep",
    "get_settings_dep",
]

_bearer = HTTPBearer(auto_error=False, description="an API key: `mpq admin create-key`")


async def get_settings_dep(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_trust_uploads(request: Request) -> bool:
    """Whether .pt2 uploads may be imported without isolation (``MPQ_TRUST_UPLOADS=1``).

    Only where bubblewrap is unavailable; with it, imports are isolated regardless.
    """
    return bool(request.app.state.trust_uploads)


TrustUploadsDep = Annotated[bool, Depends(get_trust_uploads)]


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request, closed (and rolled back if open) after it."""
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_limits(request: Request) -> Limits:
    """The upload and import slots of this API process."""
    limits: Limits = request.app.state.limits
    return limits


LimitsDep = Annotated[Limits, Depends(get_limits)]


def get_blobs(settings: SettingsDep) -> BlobStore:
    """The blob store under ``settings.blob_dir``."""
    return BlobStore(settings.blobs)


BlobsDep = Annotated[BlobStore, Depends(get_blobs)]


def get_caller(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tuple[ApiKey, Team]:
    """The API key of the request's ``Authorization: Bearer <key>``, and its team.

    The key is read in a transaction committed before this returns: the connection goes
    back to the pool while the rows stay loaded in the request's session.

    Raises:
        UnauthorizedError: no bearer key, or an unknown or revoked one (answered 401
            with ``WWW-Authenticate: Bearer``).
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise UnauthorizedError(
            "this route needs an API key: send 'Authorization: Bearer <key>' "
            "(create one with `mpq admin create-key --team TEAM`)"
        )
    found = find_key(session, credentials.credentials)
    session.commit()  # read only: ends the transaction, gives the connection back
    if found is None:
        raise UnauthorizedError(
            "the API key is unknown or revoked; create a new one with `mpq admin create-key`"
        )
    try:
        mark_key_used(session, key=found[0])  # a write at most once a minute per key
    except OperationalError:  # a busy database must not fail the request over a timestamp
        session.rollback()
    return found


Caller = Annotated[tuple[ApiKey, Team], Depends(get_caller)]


async def get_current_team(caller: Caller) -> Team:
    """The team the request acts for (every route filters its rows on it)."""
    return caller[1]


CurrentTeam = Annotated[Team, Depends(get_current_team)]


async def get_current_key(caller: Caller) -> ApiKey:
    """The API key the request was made with (recorded on the rows it creates)."""
    return caller[0]


CurrentKey = Annotated[ApiKey, Depends(get_current_key)]


async def get_queue(request: Request) -> Celery:
    """The Celery app the API enqueues with (by task name; it has no tasks of its own)."""
    queue: Celery = request.app.state.queue
    return queue


QueueDep = Annotated[Celery, Depends(get_queue)]
