"""How :class:`commands.client.Client` turns HTTP answers into exit statuses and retries.

The server is an ``httpx.MockTransport`` here: what is checked is the mapping (4xx -> 2
with the API's code, 5xx and no answer -> 1, ``Retry-After`` honoured); the real service
answers the same documents in tests/commands/test_client.py.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from commands import client as client_module
from commands.client import EXIT_SERVICE, EXIT_USAGE, Client, ClientError


def serving(*answers: httpx.Response) -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    left = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return left.pop(0)

    return Client("http://mpq.test", "mpq_key", transport=httpx.MockTransport(handle)), seen


def error(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": f"the {code} message"}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    return slept


def failure(call: Callable[[], object]) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value


def test_a_4xx_is_a_usage_error_with_the_apis_code_and_message() -> None:
    client, seen = serving(error(422, "invalid_plan"))
    exc = failure(lambda: client.post("/v1/jobs", {}))
    assert (exc.code, exc.message, exc.exit_status) == (
        "invalid_plan",
        "the invalid_plan message",
        EXIT_USAGE,
    )
    assert seen[0].headers["Authorization"] == "Bearer mpq_key"


def test_a_5xx_is_the_services_trouble() -> None:
    client, _ = serving(error(500, "internal"), httpx.Response(502, text="<html>bad gateway"))
    assert failure(lambda: client.get("/v1/jobs")).exit_status == EXIT_SERVICE
    exc = failure(lambda: client.get("/v1/jobs"))
    assert exc.code == "server_error" and exc.exit_status == EXIT_SERVICE


def test_busy_answers_are_retried_after_retry_after(no_sleep: list[float]) -> None:
    client, seen = serving(
        error(503, "busy", **{"Retry-After": "2"}),
        error(429, "rate_limited", **{"Retry-After": "1"}),
        httpx.Response(200, json={"data": [], "count": 0}),
    )
    assert client.get("/v1/jobs") == {"data": [], "count": 0}
    assert len(seen) == 3 and no_sleep == [2.0, 1.0]


def test_a_quota_without_retry_after_is_not_retried() -> None:
    client, seen = serving(error(429, "quota_exceeded"))
    assert failure(lambda: client.post("/v1/jobs", {})).code == "quota_exceeded"
    assert len(seen) == 1


def test_no_answer_is_service_unreachable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = Client("http://mpq.test", "k", transport=httpx.MockTransport(refuse))
    exc = failure(lambda: client.get("/v1/jobs"))
    assert exc.code == "service_unreachable" and exc.exit_status == EXIT_SERVICE
