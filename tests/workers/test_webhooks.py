"""Webhook deliveries driven in-process against a real receiver and a real SQLite database.

:func:`workers.webhooks.deliver` makes one attempt and schedules the next (here
``later`` records it), :func:`notify` dispatches and sends, :func:`sweep_webhooks`
finds what nobody dispatched and what was lost. The same code under real Celery
processes: ``test_webhooks_e2e.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db import make_engine, session_factory
from service.db.base import utcnow
from service.db.migrate import upgrade
from service.db.models import Job, Team, WebhookDelivery
from service.db.repos import cancel_job, create_team, fail_job
from service.domain import add_webhook, change_webhook
from service.domain import cancel_job as cancel
from service.outbound import parse_networks
from service.queue import DELIVER_WEBHOOK
from service.settings import Settings
from tests.service.db.rows import add_job, add_model
from tests.workers.receiver import receiver
from workers.webhooks import deliver, notify, sweep_webhooks

SECRET = "whsec_unit_test_secret_0123"
LOOPBACK = parse_networks("127.0.0.0/8")


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'mpq.db'}"
    upgrade(url)
    engine = make_engine(url)
    yield session_factory(engine)
    engine.dispose()


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    base = {
        "webhook_backoff_s": 0.01,
        "webhook_max_attempts": 3,
        "webhook_timeout_s": 1.0,
        "webhook_allowed_networks": "127.0.0.0/8",  # the receivers listen on 127.0.0.1
    }
    return Settings(data_dir=tmp_path, **(base | kw))


class Sent:
    """Records what was sent (``send``) and scheduled (``later``)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []
        self.later: list[tuple[int, float]] = []

    def send(self, name: str, args: list[Any]) -> None:
        self.sent.append((name, args))

    def again(self, delivery_id: int, delay_s: float) -> None:
        self.later.append((delivery_id, delay_s))


def _team_job(sessions: sessionmaker[Session], url: str) -> tuple[Team, Job]:
    with sessions() as s:
        team = create_team(s, name="acme")
        add_webhook(
            s, team=team, url=url, events=["job.failed"], secret=SECRET, allowed_networks=LOOPBACK
        )
        job = add_job(s, team, add_model(s, team))
        fail_job(s, job_id=job.id, code="invalid_data", message="no labels")
    return team, job


def _row(sessions: sessionmaker[Session], delivery_id: int) -> WebhookDelivery:
    with sessions() as s:
        row = s.get(WebhookDelivery, delivery_id)
        assert row is not None
        return row


def _due_now(sessions: sessionmaker[Session]) -> None:
    with sessions() as s:
        s.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
        s.commit()


def test_retries_with_backoff_until_a_2xx_then_never_again(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings, out = _settings(tmp_path, webhook_backoff_s=10), Sent()
    with receiver(secret=SECRET, fail_first=2) as r:
        _, job = _team_job(sessions, r.url)
        [delivery_id] = notify(sessions, out.send, job.id)
        assert out.sent == [(DELIVER_WEBHOOK, [delivery_id])]
        assert notify(sessions, out.send, job.id) == []  # dispatched once
        results = []
        for _ in range(3):
            results.append(deliver(sessions, settings, delivery_id, later=out.again))
            assert deliver(sessions, settings, delivery_id, later=out.again) == "skipped"
            if len(results) == 1:  # the status is kept, not the body the receiver sent
                failed = _row(sessions, delivery_id)
                assert (failed.status, failed.response_code) == ("pending", 500)
                assert failed.last_error == "HTTP 500" and failed.attempts == 1
            _due_now(sessions)
        assert results == ["retry in 10 s", "retry in 20 s", "delivered"]
        assert out.later == [(delivery_id, 10.0), (delivery_id, 20.0)]
        assert deliver(sessions, settings, delivery_id, later=out.again) == "skipped"
    row = _row(sessions, delivery_id)
    assert (row.status, row.attempts, row.response_code, row.last_error) == (
        "delivered",
        3,
        200,
        None,
    )
    assert [g.status for g in r.got] == [500, 500, 200]
    assert all(g.verified for g in r.got)
    got = r.got[-1]
    assert got.event == "job.failed" and got.delivery == delivery_id
    assert got.headers["User-Agent"] == "mpq-webhooks"
    assert got.headers["Content-Type"] == "application/json"
    assert got.payload["job"]["error"] == {"code": "invalid_data", "message": "no labels"}


def test_a_hanging_receiver_ends_failed_after_the_last_attempt(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings, out = _settings(tmp_path, webhook_timeout_s=0.3), Sent()
    with receiver(secret=SECRET, mode="hang") as r:
        _, job = _team_job(sessions, r.url)
        [delivery_id] = notify(sessions, out.send, job.id)
        results = []
        for _ in range(3):
            results.append(deliver(sessions, settings, delivery_id, later=out.again))
            _due_now(sessions)
    assert results[-1] == "failed" and results[0].startswith("retry in")
    row = _row(sessions, delivery_id)
    assert (row.status, row.attempts, row.response_code) == ("failed", 3, None)
    assert (row.last_error or "").startswith("timed out")
    assert len(r.got) == 3


def test_a_disabled_webhook_gets_nothing(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    out = Sent()
    with receiver(secret=SECRET) as r:
        team, job = _team_job(sessions, r.url)
        [delivery_id] = notify(sessions, out.send, job.id)
        with sessions() as s:
            change_webhook(s, team=team, webhook_id=1, enabled=False)
        assert deliver(sessions, _settings(tmp_path), delivery_id, later=out.again) == "failed"
    assert r.got == [] and _row(sessions, delivery_id).last_error == "the webhook is disabled"


def test_an_address_no_longer_allowed_is_never_connected_to(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    # The operator narrowed MPQ_WEBHOOK_ALLOWED_NETWORKS after the webhook was made:
    # every attempt is refused before a connection, with the reason in the log.
    settings, out = _settings(tmp_path, webhook_allowed_networks=""), Sent()
    with receiver(secret=SECRET, fail_first=0) as r:
        _, job = _team_job(sessions, r.url)
        [delivery_id] = notify(sessions, out.send, job.id)
        assert deliver(sessions, settings, delivery_id, later=out.again).startswith("retry")
        row = _row(sessions, delivery_id)
        assert row.response_code is None and row.attempts == 1
        assert (row.last_error or "").startswith("ConnectError: refused: 127.0.0.1 is a loopback")
        assert "MPQ_WEBHOOK_ALLOWED_NETWORKS" in (row.last_error or "")
    assert r.got == []


def test_a_cancel_with_a_queue_dispatches_job_cancelled_at_once(
    sessions: sessionmaker[Session],
) -> None:
    out = Sent()
    with sessions() as s:
        team = create_team(s, name="acme")
        add_webhook(s, team=team, url="https://ci.example/h", events=["job.cancelled"])
        job = add_job(s, team, add_model(s, team))
        cancelled = cancel(s, team=team, job_id=job.id, send=out.send)
        assert cancelled.status == "cancelled" and cancelled.notified_at is not None
        [(name, [delivery_id])] = out.sent
        assert name == DELIVER_WEBHOOK and _row(sessions, delivery_id).event == "job.cancelled"
        cancel(s, team=team, job_id=job.id, send=out.send)  # again: nothing more is sent
    assert len(out.sent) == 1


def test_the_sweep_dispatches_cancelled_jobs_and_resends_lost_deliveries(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    settings, out = _settings(tmp_path, grace_s=30, heartbeat_s=1), Sent()
    with sessions() as s:
        team = create_team(s, name="acme")
        add_webhook(s, team=team, url="https://ci.example/h", events=["job.cancelled"])
        job = add_job(s, team, add_model(s, team))
        cancel_job(s, job=job)  # in the API: no worker is told
    assert sweep_webhooks(sessions, settings, out.send) == 1
    [(name, [delivery_id])] = out.sent
    assert name == DELIVER_WEBHOOK
    assert sweep_webhooks(sessions, settings, out.send) == 0  # not lost yet
    with sessions() as s:  # its message was lost a minute ago
        s.execute(update(WebhookDelivery).values(next_attempt_at=utcnow() - timedelta(minutes=1)))
        s.commit()
    assert sweep_webhooks(sessions, settings, out.send) == 1
    assert sweep_webhooks(sessions, settings, out.send) == 0  # re-sent once per grace
    assert out.sent[-1] == (DELIVER_WEBHOOK, [delivery_id])
    with sessions() as s:
        assert s.scalar(select(Job.notified_at).where(Job.id == job.id)) is not None
