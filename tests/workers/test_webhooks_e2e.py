"""Webhooks end to end over real processes: uvicorn, a Celery worker, real receivers.

On both stacks (SQLite and the SQLite broker; PostgreSQL and Redis), with small webhook
settings: attempts time out after 1 s, back off from 0.3 s (countdown messages), three
at most; the recovery sweep runs every 0.5 s. Two webhooks: ``good`` (a receiver that
answers 500 to the first two attempts of each delivery, then 200, and checks every
signature) and ``hanging`` (never answers). A digits job is cancelled while queued (the
API cancels it and dispatches ``job.cancelled`` at once) and another runs to success on
a one-process worker while the hanging receiver holds attempts: each event reaches
``good`` exactly once, on its third attempt, and the log says so; the hanging
receiver's deliveries end failed after three attempts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Digits
from tests.service.api.conftest import STACKS, Server, start_stack
from tests.workers.conftest import job_body, start_worker, upload_digits, wait_for, worker_log
from tests.workers.receiver import Receiver, receiver

SETTINGS = {
    "MPQ_WEBHOOK_TIMEOUT_S": "1",
    "MPQ_WEBHOOK_BACKOFF_S": "0.3",
    "MPQ_WEBHOOK_MAX_ATTEMPTS": "3",
    "MPQ_RECOVERY_INTERVAL_S": "0.5",
    "MPQ_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",  # the receivers listen on 127.0.0.1
}
SECRET_GOOD, SECRET_HANG = "whsec_e2e_good_0123456789", "whsec_e2e_hang_0123456789"
EVENTS = ["job.succeeded", "job.failed", "job.cancelled"]


@pytest.fixture(params=STACKS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(request.param)
    for server in start_stack(request.param, tmp, **SETTINGS):
        with start_worker(server, concurrency=1):
            yield server


def _hook(c: httpx.Client, url: str, secret: str) -> int:
    r = c.post("/v1/webhooks", json={"url": url, "events": EVENTS, "secret": secret})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _log(c: httpx.Client, hook: int) -> list[dict[str, Any]]:
    r = c.get(f"/v1/webhooks/{hook}/deliveries")
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["data"]
    return rows


def _settled(c: httpx.Client, hook: int, n: int, server: Server) -> list[dict[str, Any]]:
    """Poll the delivery log until ``n`` deliveries are no longer pending."""
    deadline = time.monotonic() + 120
    while True:
        rows = _log(c, hook)
        if len(rows) == n and all(d["status"] != "pending" for d in rows):
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"deliveries of webhook {hook} still {rows}:\n{worker_log(server)}")
        time.sleep(0.25)


def test_events_arrive_once_after_retries_and_a_hanging_receiver_blocks_nothing(
    stack: Server, digits: Digits
) -> None:
    with (
        receiver(secret=SECRET_GOOD, fail_first=2) as good,
        receiver(secret=SECRET_HANG, mode="hang") as hanging,
        stack.client(stack.key_a) as c,
    ):
        good_id, hang_id = _hook(c, good.url, SECRET_GOOD), _hook(c, hanging.url, SECRET_HANG)
        model_id, dataset_id = upload_digits(c, digits)
        body = job_body(model_id, dataset_id, budget={"trials": 6})
        r = c.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        cancelled = r.json()["id"]
        assert c.post(f"/v1/jobs/{cancelled}/cancel").json()["status"] == "cancelled"
        # dispatched by the cancel itself: the delivery is logged when the answer comes
        log = c.get(f"/v1/webhooks/{good_id}/deliveries").json()["data"]
        assert [(d["event"], d["job_id"]) for d in log] == [("job.cancelled", cancelled)]
        r = c.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        succeeded = r.json()["id"]
        job = wait_for(stack, c, succeeded, lambda j: j["status"] in ("succeeded", "failed"))
        assert job["status"] == "succeeded", job

        good_log = _settled(c, good_id, 2, stack)
        hang_log = _settled(c, hang_id, 2, stack)
        _assert_exactly_once(good, cancelled, succeeded)
        assert [d["status"] for d in hang_log] == ["failed", "failed"]
        assert {d["attempts"] for d in hang_log} == {3}
        assert {d["response_code"] for d in hang_log} == {None}
        assert all(d["last_error"].startswith("timed out") for d in hang_log)
        assert len(hanging.got) == 6 and all(g.verified for g in hanging.got)
        # the cancelled job's attempts hung while the other job was still running
        finished = datetime.fromisoformat(job["finished_at"]).timestamp()
        held = [g.at for g in hanging.got if g.event == "job.cancelled"]
        assert len(held) == 3 and min(held) < finished, (held, finished)
        time.sleep(2)  # four sweeps: nothing more is sent to either receiver
        _assert_exactly_once(good, cancelled, succeeded)
        assert len(hanging.got) == 6

    by_event = {d["event"]: d for d in good_log}
    assert set(by_event) == {"job.succeeded", "job.cancelled"}
    for d in good_log:
        assert (d["status"], d["attempts"], d["response_code"]) == ("delivered", 3, 200)
        assert d["delivered_at"] is not None and d["last_error"] is None
    assert by_event["job.succeeded"]["job_id"] == succeeded
    assert by_event["job.cancelled"]["job_id"] == cancelled


def _assert_exactly_once(good: Receiver, cancelled: int, succeeded: int) -> None:
    assert all(g.verified for g in good.got), [g.headers for g in good.got]
    assert sorted(good.tries.values()) == [3, 3]
    [done] = good.answered("job.succeeded")
    [gone] = good.answered("job.cancelled")
    assert good.answered("job.failed") == []
    assert (done.payload["job"]["id"], gone.payload["job"]["id"]) == (succeeded, cancelled)
    job = done.payload["job"]
    assert job["status"] == "succeeded" and job["model"]["name"] == "digits"
    assert job["chosen"]["bytes"] > 0 and job["error"] is None
    assert job["ratio"] == pytest.approx(job["baseline"]["bytes"] / job["chosen"]["bytes"], 1e-3)
    assert job["url"] == f"/v1/jobs/{succeeded}" and done.headers["MPQ-Event"] == "job.succeeded"
    assert "/" not in str(job["targets"])  # names and numbers only, no server path
