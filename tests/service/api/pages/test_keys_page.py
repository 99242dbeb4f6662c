"""``/ui/keys`` on a real server: a created key's secret is shown once and works; revoking
one stops it, another team's is a 404 page, and revoking the session's own key signs out."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.service.api.conftest import Server, start_stack
from tests.service.api.pages.conftest import Element, csrf_of, parse_html, sign_in


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_stack("embedded", tmp_path_factory.mktemp("keys-page"))


@pytest.fixture(scope="module")
def page(server: Server) -> Iterator[httpx.Client]:
    with sign_in(server, server.key_a) as client:
        yield client


def _row(html: str, name: str) -> Element:
    rows = [r for r in parse_html(html).one("table", id="keys").find_all("tr") if "id" in r.attrs]
    found = [r for r in rows if r.find_all("td")[0].words().split(" this sign-in")[0] == name]
    assert len(found) == 1, [r.text for r in rows]
    return found[0]


def _create(page: httpx.Client, name: str) -> tuple[int, str, httpx.Response]:
    token = csrf_of(page.get("/ui/keys").text)
    r = page.post("/ui/keys", data={"csrf": token, "name": name})
    assert r.status_code == 200, r.text
    secret = parse_html(r.text).one(cls="secret").words()
    key_id = int(_row(r.text, name).attrs["id"].removeprefix("key-"))
    return key_id, secret, r


def _revoke(page: httpx.Client, key_id: int) -> httpx.Response:
    token = csrf_of(page.get("/ui/keys").text)
    return page.post(f"/ui/keys/{key_id}/revoke", data={"csrf": token})


def _status(server: Server, secret: str) -> int:
    with server.client(secret) as c:
        return c.get("/v1/models").status_code


def test_keys_page_lists_the_teams_keys(page: httpx.Client, server: Server) -> None:
    r = page.get("/ui/keys")
    assert r.status_code == 200, r.text
    row = _row(r.text, "default")
    cells = [td.words() for td in row.find_all("td")]
    assert cells[1] == server.key_a[:12] + "…"
    assert cells[4] == "live"
    assert cells[3] != "never"  # this sign-in used it
    form = row.one("form", cls="revoke")
    assert form.attrs["action"] == f"/ui/keys/{row.attrs['id'].removeprefix('key-')}/revoke"
    assert "data-confirm" in form.attrs
    assert not parse_html(r.text).find_all(cls="secret")
    assert parse_html(r.text).one("form", id="create-key").one("input", name="name")


def test_a_created_key_is_shown_once_and_works(page: httpx.Client, server: Server) -> None:
    key_id, secret, r = _create(page, "ci pipeline")
    assert r.headers["cache-control"] == "no-store"
    assert secret.startswith("mpq_") and len(secret) > 40
    assert "cannot be shown again" in parse_html(r.text).one(cls="created-key").words()
    assert _status(server, secret) == 200
    again = page.get("/ui/keys").text
    assert secret not in again and not parse_html(again).find_all(cls="secret")
    row = _row(again, "ci pipeline")
    assert row.attrs["id"] == f"key-{key_id}"
    assert row.find_all("td")[1].words() == secret[:12] + "…"


def test_revoking_a_key_stops_it(page: httpx.Client, server: Server) -> None:
    key_id, secret, _ = _create(page, "short-lived")
    r = _revoke(page, key_id)
    assert r.status_code == 303 and r.headers["location"] == "/ui/keys"
    assert _status(server, secret) == 401
    row = _row(page.get("/ui/keys").text, "short-lived")
    assert row.find_all("td")[4].words() == "revoked"
    assert not row.find_all("form")


def test_another_teams_key_is_a_404_page(page: httpx.Client, server: Server) -> None:
    with sign_in(server, server.key_b) as other:
        other_id = int(_row(other.get("/ui/keys").text, "default").attrs["id"][4:])
    for key_id in (other_id, 999_999, 2**63):
        r = _revoke(page, key_id)
        assert r.status_code == 404, r.text
        assert parse_html(r.text).one(cls="error").one("code").words() == "not_found"
    assert _status(server, server.key_b) == 200


def test_forms_without_the_token_change_nothing(page: httpx.Client, server: Server) -> None:
    before = page.get("/ui/keys").text.count('<tr id="key-')
    r = page.post("/ui/keys", data={"name": "forged"})
    assert r.status_code == 403
    assert parse_html(r.text).one(cls="error").one("code").words() == "csrf_failed"
    own = int(_row(page.get("/ui/keys").text, "default").attrs["id"][4:])
    r = page.post(f"/ui/keys/{own}/revoke", data={"csrf": "nope" * 8})
    assert r.status_code == 403
    assert page.get("/ui/keys").text.count('<tr id="key-') == before
    assert _status(server, server.key_a) == 200


def test_revoking_the_sessions_own_key_signs_out(page: httpx.Client, server: Server) -> None:
    _, secret, _ = _create(page, "browser")
    with sign_in(server, secret) as browser:
        own = _row(browser.get("/ui/keys").text, "browser")
        assert "this sign-in" in own.words()
        r = _revoke(browser, int(own.attrs["id"][4:]))
        assert r.status_code == 303
        after = browser.get("/ui/keys")
        assert after.status_code == 303
        assert after.headers["location"].startswith("/ui/signin?next=/ui/keys")
    assert page.get("/ui/keys").status_code == 200  # another session of the team goes on


def test_a_blank_name_is_refused_with_the_apis_code(page: httpx.Client) -> None:
    before = page.get("/ui/keys").text
    r = page.post("/ui/keys", data={"csrf": csrf_of(before), "name": "  \t "})
    assert r.status_code == 422, r.text
    assert parse_html(r.text).one(cls="error").one("code").words() == "invalid_name"
    assert not parse_html(r.text).find_all(cls="secret")
    assert r.text.count('<tr id="key-') == before.count('<tr id="key-')
