"""Dashboard sign-in over a real server (uvicorn, SQLite), as a browser speaks HTTP to it.

The session cookie's attributes, the CSRF tokens of the sign-in and sign-out forms, where
an unsigned visitor is sent and where ``next`` may lead, the ways a session ends (signing
out, the key revoked, the session expired), and the headers every page carries.
"""

from __future__ import annotations

import os
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from service.api.headers import PAGES_CSP
from service.db import make_engine, session_factory
from service.db.base import utcnow
from service.db.models import ApiKey, WebSession
from service.db.repos import hash_secret, revoke_api_key
from tests.service.api.conftest import Server
from tests.service.api.pages.conftest import csrf_of, mpq, sign_in_form


def _env(server: Server) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    return env | {"MPQ_DATA_DIR": str(server.data_dir), "MPQ_DATABASE_URL": server.database_url}


def _new_key(server: Server, name: str) -> str:
    """A fresh key of team ``alpha`` made with ``mpq admin create-key``."""
    return mpq(_env(server), "admin", "create-key", "--team", "alpha", "--name", name).strip()


def _cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of the ``Set-Cookie`` header for ``name``, keys lower-cased."""
    for header in response.headers.get_list("set-cookie"):
        first, *rest = (part.strip() for part in header.split(";"))
        if first.split("=", 1)[0] == name:
            attrs = {"value": first.split("=", 1)[1]}
            for part in rest:
                key, _, value = part.partition("=")
                attrs[key.lower()] = value
            return attrs
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


def _error_code(response: httpx.Response) -> str:
    """The code an error page shows (``<code>...</code>`` in its ``.error``)."""
    html = response.text
    start = html.index('class="error"')
    return html[html.index("<code>", start) + 6 : html.index("</code>", start)]


def _signed_in(c: httpx.Client) -> bool:
    """Whether ``c``'s cookies open the jobs page (rather than being sent to sign in)."""
    r = c.get("/ui/jobs")
    assert r.status_code in (200, 303), r.text
    return r.status_code == 200


def test_sign_in_sets_an_http_only_strict_session_cookie(server: Server) -> None:
    with server.client(None) as c:
        r = sign_in_form(c, server.key_a)
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/ui/jobs"
        cookie = _cookie_attributes(r, "mpq_session")
        assert len(cookie["value"]) >= 40
        assert "httponly" in cookie
        assert cookie["samesite"].lower() == "strict"
        assert cookie["path"] == "/ui"
        assert "secure" not in cookie  # plain http: a Secure cookie would never come back
        assert _signed_in(c)


def test_a_wrong_key_is_refused_with_a_401_page(server: Server) -> None:
    with server.client(None) as c:
        r = sign_in_form(c, "mpq_" + "x" * 40)
        assert r.status_code == 401
        assert _error_code(r) == "unauthorized"
        assert "mpq_session" not in r.cookies
        assert not _signed_in(c)


def test_sign_in_without_its_csrf_cookie_or_token_is_refused(server: Server) -> None:
    token = "t" * 32
    with server.client(None) as c:  # a form posted from elsewhere: no mpq_signin cookie
        r = c.post("/ui/signin", data={"key": server.key_a, "csrf": token, "next": "/ui/jobs"})
        assert r.status_code == 403
        assert _error_code(r) == "csrf_failed"
        assert "mpq_session" not in r.cookies
    with server.client(None) as c:  # the cookie, but the form without its token
        c.get("/ui/signin")
        r = c.post("/ui/signin", data={"key": server.key_a, "next": "/ui/jobs"})
        assert r.status_code == 403
        assert _error_code(r) == "csrf_failed"
        assert not _signed_in(c)


def test_an_unsigned_visitor_is_sent_to_sign_in_and_back(server: Server) -> None:
    with server.client(None) as c:
        r = c.get("/ui/jobs")
        assert r.status_code == 303
        target = urlsplit(r.headers["location"])
        assert target.path == "/ui/signin"
        assert parse_qs(target.query) == {"next": ["/ui/jobs"]}
        form = c.get(r.headers["location"])
        assert 'name="next" value="/ui/jobs"' in form.text
        r = sign_in_form(c, server.key_a, next_url="/ui/jobs?status=running")
        assert r.headers["location"] == "/ui/jobs?status=running"


@pytest.mark.parametrize(
    "target",
    ["//evil.com", "https://evil.com/ui/x", "//evil.com/ui/jobs", "/ui//evil.com", "/\\evil.com"],
)
def test_next_never_leads_to_another_site(server: Server, target: str) -> None:
    with server.client(None) as c:
        form = c.get("/ui/signin", params={"next": target})
        assert 'name="next" value="/ui/jobs"' in form.text
        r = sign_in_form(c, server.key_a, next_url=target)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/jobs"


def test_sign_out_needs_the_csrf_token_then_ends_the_session(server: Server) -> None:
    with server.client(None) as c:
        sign_in_form(c, server.key_a)
        page = c.get("/ui/jobs")
        old = c.cookies["mpq_session"]
        r = c.post("/ui/signout", data={})
        assert r.status_code == 403
        assert _error_code(r) == "csrf_failed"
        r = c.post("/ui/signout", data={"csrf": "not-the-token"})
        assert r.status_code == 403
        assert _signed_in(c)
        r = c.post("/ui/signout", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/signin"
        cleared = _cookie_attributes(r, "mpq_session")
        assert cleared["max-age"] == "0" or cleared["value"] in ("", '""')
    with server.client(None) as c:  # the old cookie, replayed, opens nothing
        c.cookies.set("mpq_session", old, path="/ui")
        assert not _signed_in(c)


def test_revoking_the_key_ends_its_sessions(server: Server) -> None:
    key = _new_key(server, "revoked-in-test")
    with server.client(None) as c:
        sign_in_form(c, key)
        assert _signed_in(c)
        engine = make_engine(server.database_url)
        try:
            with session_factory(engine)() as session:
                row = session.scalars(select(ApiKey).where(ApiKey.hash == hash_secret(key))).one()
                revoke_api_key(session, key=row)
        finally:
            engine.dispose()
        assert not _signed_in(c)


def test_an_expired_session_is_refused(server: Server) -> None:
    with server.client(None) as c:
        sign_in_form(c, server.key_a)
        assert _signed_in(c)
        token = c.cookies["mpq_session"]
        engine = make_engine(server.database_url)
        try:
            with engine.begin() as conn:
                done = conn.execute(
                    update(WebSession)
                    .where(WebSession.hash == hash_secret(token))
                    .values(expires_at=utcnow() - timedelta(seconds=1))
                )
                assert done.rowcount == 1
        finally:
            engine.dispose()
        assert not _signed_in(c)


def test_pages_carry_the_dashboard_csp_and_no_store(server: Server) -> None:
    with server.client(None) as c:
        signin = c.get("/ui/signin")
        sign_in_form(c, server.key_a)
        for r in (signin, c.get("/ui/jobs"), c.get("/ui/jobs/rows"), c.get("/ui/jobs/999999")):
            assert r.headers["content-security-policy"] == PAGES_CSP, r.url
            assert r.headers["cache-control"] == "no-store", r.url
            assert r.headers["x-content-type-options"] == "nosniff"


def test_the_style_sheet_is_served(server: Server) -> None:
    with server.client(None) as c:
        r = c.get("/ui/static/mpq.css")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/css")
        assert ".badge" in r.text


def test_an_api_call_records_when_the_key_was_last_used(server: Server) -> None:
    key = _new_key(server, "last-used")

    def last_used() -> object:
        engine = make_engine(server.database_url)
        try:
            with engine.connect() as conn:
                return conn.scalar(
                    select(ApiKey.last_used_at).where(ApiKey.hash == hash_secret(key))
                )
        finally:
            engine.dispose()

    assert last_used() is None
    before = utcnow() - timedelta(seconds=5)
    with server.client(key) as c:
        assert c.get("/v1/jobs").status_code == 200
    used = last_used()
    assert used is not None
    assert used >= before  # type: ignore[operator]
