"""``/ui/keys``: the team's API keys; create one (its secret shown once), revoke one.

A new key's secret is shown on the answer to the form that created it, and never again
(the database keeps its sha256): that answer is ``Cache-Control: no-store``, so that no
cache and no back button brings it back. Revoking a key ends every dashboard session
opened with it, this one included when it is the key the session acts as (the next page
asks to sign in again).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from engine.errors import MPQError
from service.api.deps import SessionDep
from service.api.errors import http_status
from service.api.pages.auth import PREFIX, PageCaller, Viewer, require_csrf
from service.api.pages.render import render
from service.api.params import MAX_ID
from service.db import repos
from service.db.models import ApiKey
from service.errors import InvalidNameError

__all__ = ["router"]

router = APIRouter()


def _page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    created: tuple[ApiKey, str] | None = None,
    error: MPQError | None = None,
    name: str = "",
) -> Response:
    response = render(
        request,
        "keys.html",
        viewer=viewer,
        status=200 if error is None else http_status(type(error)),
        keys=repos.list_api_keys(session, team=viewer.team),
        created=None if created is None else {"key": created[0], "secret": created[1]},
        error=None if error is None else {"code": error.code, "message": error.message},
        name=name,
    )
    if created is not None:
        response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/keys")
def keys_page(request: Request, session: SessionDep, viewer: PageCaller) -> Response:
    """The team's keys: live ones first, each group newest first."""
    return _page(request, session, viewer)


@router.post("/keys")
def create_key(
    request: Request,
    session: SessionDep,
    viewer: PageCaller,
    csrf: Annotated[str, Form(max_length=128)] = "",
    name: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    """Create a key named ``name`` for the team; the answer shows its secret, once.

    A refused name (blank, too long, control characters) shows the page again with the
    error and the name as typed.
    """
    require_csrf(viewer, csrf)
    try:
        created = repos.create_api_key(session, team=viewer.team, name=name)
    except InvalidNameError as exc:
        session.rollback()
        return _page(request, session, viewer, error=exc, name=name)
    return _page(request, session, viewer, created=created)


@router.post("/keys/{key_id:int}/revoke")
def revoke_key(
    session: SessionDep,
    viewer: PageCaller,
    key_id: int,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Revoke one of the team's keys (another team's: 404), then back to the keys."""
    require_csrf(viewer, csrf)
    if key_id > MAX_ID:
        key_id = 0  # reads as a miss, like any id no row has
    key = repos.get_api_key(session, team=viewer.team, key_id=key_id)
    repos.revoke_api_key(session, key=key)
    return RedirectResponse(f"{PREFIX}/keys", status_code=303)
