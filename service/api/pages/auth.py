"""Dashboard sign-in: an API key exchanged for a session cookie, and CSRF tokens on forms.

Signing in posts an API key's secret once; the answer sets :data:`COOKIE`, a random
token (the database keeps its sha256, :mod:`service.db.repos.web_sessions`), with
``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it),
``Path=/ui`` and, over HTTPS, ``Secure``. Every page then acts as that key's team,
exactly as the API does with the key: another team's job is a 404 page.

Forms carry a CSRF token (the synchronizer-token pattern): the session row holds a
random ``csrf`` value, every form of the session embeds it in a hidden field
``csrf``, and every state-changing page route compares the two in constant time
(:func:`require_csrf`) before it does anything. The sign-in form, before any session
exists, uses a double-submit token instead: a random value in the cookie
:data:`SIGNIN_COOKIE` and the same in the form (:func:`signin_token`).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy.exc import OperationalError

from service.api.deps import SessionDep
from service.api.headers import PAGES_PREFIX
from service.db.models import ApiKey, Team, WebSession
from service.db.repos import find_web_session, mark_key_used
from service.errors import CsrfError, UnauthorizedError

__all__ = [
    "COOKIE",
    "PREFIX",
    "SIGNIN_COOKIE",
    "PageCaller",
    "Viewer",
    "clear_session_cookie",
    "require_csrf",
    "set_session_cookie",
    "signin_token",
]

PREFIX = PAGES_PREFIX
"""Where the dashboard lives; ``/`` redirects here."""

COOKIE = "mpq_session"
"""The session cookie's name."""

SIGNIN_COOKIE = "mpq_signin"
"""The sign-in form's double-submit CSRF cookie."""


@dataclass(frozen=True)
class Viewer:
    """Who a page is for: the session, the API key it acts as, and that key's team."""

    web: WebSession
    key: ApiKey
    team: Team

    @property
    def csrf(self) -> str:
        """The token every form of this session carries."""
        return self.web.csrf


def get_viewer(request: Request, session: SessionDep) -> Viewer:
    """The signed-in viewer of a dashboard request.

    Raises:
        UnauthorizedError: no session cookie, or an unknown, expired or revoked one
            (a page answers it with a redirect to the sign-in page).
    """
    token = request.cookies.get(COOKIE, "")
    found = find_web_session(session, token) if token else None
    session.commit()  # read only: the connection goes back to the pool
    if found is None:
        raise UnauthorizedError("sign in with an API key to see the dashboard")
    web, key, team = found
    try:
        mark_key_used(session, key=key)
    except OperationalError:  # a busy database must not fail the page over a timestamp
        session.rollback()
    return Viewer(web=web, key=key, team=team)


PageCaller = Annotated[Viewer, Depends(get_viewer)]


def require_csrf(viewer: Viewer, token: object) -> None:
    """Refuse a form whose ``csrf`` field is not the session's token.

    Raises:
        CsrfError: the field is missing or differs.
    """
    if not isinstance(token, str) or not hmac.compare_digest(token, viewer.csrf):
        raise CsrfError(
            "the form was sent without this sign-in's security token (it may come from "
            "another site, or from a page opened before you signed in again); reload the "
            "page and send it again"
        )


def signin_token(request: Request) -> str:
    """The sign-in form's token: the browser's :data:`SIGNIN_COOKIE`, or a new one."""
    token = request.cookies.get(SIGNIN_COOKIE, "")
    return token if 20 <= len(token) <= 64 else secrets.token_urlsafe(24)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_signin_cookie(response: Response, request: Request, token: str) -> None:
    """Give the browser the sign-in form's double-submit token (10 minutes)."""
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=600,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def set_session_cookie(response: Response, request: Request, token: str, *, ttl_s: int) -> None:
    """Set the session cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` over HTTPS)."""
    response.set_cookie(
        COOKIE,
        token,
        max_age=ttl_s,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(SIGNIN_COOKIE, path=PREFIX)


def clear_session_cookie(response: Response, request: Request) -> None:
    """Tell the browser to forget the session cookie."""
    response.delete_cookie(
        COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=_secure(request)
    )
