"""``/v1/webhooks`` over HTTP against a real uvicorn process (SQLite).

Validation codes before any 201, the secret shown once, team isolation (another team's
id answers 404 on every route), PATCH and DELETE, an empty delivery log.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.service.api.conftest import Server

URL = "https://ci.example.com/mpq-hook"


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    error: dict[str, str] = r.json()["error"]
    assert error["code"] == code, error
    return error["message"]


def _create(c: httpx.Client, **body: Any) -> httpx.Response:
    return c.post("/v1/webhooks", json={"url": URL, "events": ["job.succeeded"]} | body)


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        ({"url": "ftp://ci.example.com/x"}, "invalid_webhook_url", "http:// or https://"),
        ({"url": "https://u:p@ci.example.com/"}, "invalid_webhook_url", "user:password"),
        ({"url": "https://ci.example.com/#x"}, "invalid_webhook_url", "#fragment"),
        ({"url": "https://"}, "invalid_webhook_url", "no host"),
        ({"url": "https://a.example/" + "x" * 2040}, "invalid_webhook_url", "2,048"),
        ({"events": []}, "invalid_webhook_events", "events is empty"),
        ({"events": ["job.started"]}, "invalid_webhook_events", "job.started"),
        ({"secret": "short"}, "invalid_webhook_secret", "16 to 255"),
        ({"secret": "s" * 256}, "invalid_webhook_secret", "16 to 255"),
        ({"secret": "\x00" * 16}, "invalid_webhook_secret", "printable ASCII"),
        ({"secret": "é" * 16}, "invalid_webhook_secret", "printable ASCII"),
        ({"url": "https://a.example/\x00"}, "invalid_webhook_url", "control characters"),
        ({"url": "http://169.254.169.254/"}, "invalid_webhook_url", "a link-local address"),
        ({"url": "http://localhost:8080/"}, "invalid_webhook_url", "a loopback address"),
        ({"url": "http://10.0.0.5/hook"}, "invalid_webhook_url", "a private address"),
        ({"events": ["x" * 1000] * 9}, "invalid_webhook_events", "and 4 more"),
        ({"events": "job.failed"}, "invalid_request", "events"),
        ({"colour": "red"}, "invalid_request", "colour"),
    ],
)
def test_bad_webhooks_are_refused_with_a_stable_code(
    server: Server, body: dict[str, Any], code: str, words: str
) -> None:
    with server.client(server.key_a) as c:
        before = c.get("/v1/webhooks").json()["count"]
        assert words in _error(_create(c, **body), 422, code)
        assert c.get("/v1/webhooks").json()["count"] == before


def test_the_secret_is_shown_once_and_teams_are_isolated(server: Server) -> None:
    with server.client(server.key_a) as a, server.client(server.key_b) as b:
        r = _create(a, events=["job.failed", "job.succeeded", "job.failed"])
        assert r.status_code == 201, r.text
        hook = r.json()
        assert hook["secret"].startswith("whsec_") and hook["enabled"] is True
        assert hook["events"] == ["job.failed", "job.succeeded"]
        given = _create(a, secret="my-own-secret-0123456789").json()
        assert given["secret"] == "my-own-secret-0123456789"
        for view in (
            a.get(f"/v1/webhooks/{hook['id']}").json(),
            *a.get("/v1/webhooks").json()["data"],
        ):
            assert "secret" not in view
        assert hook["secret"] not in a.get("/v1/webhooks").text
        path = f"/v1/webhooks/{hook['id']}"
        assert b.get("/v1/webhooks").json() == {"data": [], "count": 0}
        _error(b.get(path), 404, "not_found")
        _error(b.patch(path, json={"enabled": False}), 404, "not_found")
        _error(b.get(f"{path}/deliveries"), 404, "not_found")
        _error(b.delete(path), 404, "not_found")
        assert a.get(path).json()["enabled"] is True

        r = a.patch(path, json={"enabled": False, "events": ["job.cancelled"]})
        assert r.status_code == 200, r.text
        assert (r.json()["enabled"], r.json()["events"]) == (False, ["job.cancelled"])
        _error(a.patch(path, json={"url": "gopher://x"}), 422, "invalid_webhook_url")
        _error(a.patch(path, json={"secret": "x" * 20}), 422, "invalid_request")
        assert a.get(f"{path}/deliveries").json() == {"data": [], "count": 0}
        assert a.delete(path).status_code == 204
        _error(a.get(path), 404, "not_found")
        _error(a.get("/v1/webhooks/0"), 422, "invalid_request")


def test_webhooks_need_a_key(server: Server) -> None:
    with server.client(None) as c:
        _error(c.get("/v1/webhooks"), 401, "unauthorized")
        _error(_create(c), 401, "unauthorized")
