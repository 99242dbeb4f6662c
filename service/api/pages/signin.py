"""``/ui/signin`` and ``/ui/signout``: an API key in, a session cookie out, and back."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from engine.errors import MPQError
from service.api.deps import SessionDep, SettingsDep
from service.api.pages.auth import (
    COOKIE,
    PREFIX,
    SIGNIN_COOKIE,
    PageCaller,
    clear_session_cookie,
    require_csrf,
    set_session_cookie,
    set_signin_cookie,
    signin_token,
)
from service.api.pages.render import render
from service.db.repos import close_web_session, find_key, open_web_session
from service.errors import CsrfError, UnauthorizedError

__all__ = ["router"]

router = APIRouter()


def _safe_next(target: str) -> str:
    """Where to go after signing in: a dashboard path of this site, never another site."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/"):
        return f"{PREFIX}/jobs"
    if "//" in parts.path or "\\" in target:
        return f"{PREFIX}/jobs"
    return target


def _signin_page(
    request: Request, *, next_url: str, error: MPQError | None = None, status: int = 200
) -> Response:
    token = signin_token(request)
    shown = None if error is None else {"code": error.code, "message": error.message}
    response = render(
        request,
        "signin.html",
        viewer=None,
        status=status,
        signin_csrf=token,
        next=_safe_next(next_url),
        error=shown,
    )
    set_signin_cookie(response, request, token)
    return response


@router.get("/signin")
def signin_form(request: Request, next: str = f"{PREFIX}/jobs") -> Response:
    """The sign-in page: one field, an API key."""
    return _signin_page(request, next_url=next)


@router.post("/signin")
def signin(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    key: Annotated[str, Form(max_length=256)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = f"{PREFIX}/jobs",
) -> Response:
    """Exchange an API key for a session cookie, then go to ``next``."""
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or csrf != expected:
        refused = CsrfError(
            "the sign-in form was sent without its security token (cookies may be off, or "
            "the form came from another site); reload the page and sign in again"
        )
        return _signin_page(request, next_url=next, error=refused, status=403)
    found = find_key(session, key.strip())
    session.commit()
    if found is None:
        error = UnauthorizedError(
            "that API key is unknown or revoked; check it, or ask for a new one "
            "(`mpq admin create-key`)"
        )
        return _signin_page(request, next_url=next, error=error, status=401)
    _, token = open_web_session(session, key=found[0], ttl_s=settings.session_ttl_s)
    response = RedirectResponse(_safe_next(next), status_code=303)
    set_session_cookie(response, request, token, ttl_s=settings.session_ttl_s)
    return response


@router.post("/signout")
def signout(
    request: Request,
    viewer: PageCaller,
    session: SessionDep,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """End this browser's session and go back to the sign-in page."""
    require_csrf(viewer, csrf)
    close_web_session(session, token=request.cookies.get(COOKIE, ""))
    response = RedirectResponse(f"{PREFIX}/signin", status_code=303)
    clear_session_cookie(response, request)
    return response
