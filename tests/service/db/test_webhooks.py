"""Webhook repositories and the outbox, on SQLite and PostgreSQL.

Team scoping of webhooks and their delivery log; :func:`service.domain.dispatch_job`
(events per final state, subscribers created before the job ended, once per job);
delivery claims (one attempt at a time, never after delivered) and the lost-message sweep.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.db import Job, JobStatus, Team
from service.db.base import utcnow
from service.db.models import DeliveryStatus, Webhook, WebhookDelivery
from service.db.repos import (
    cancel_job,
    count_deliveries,
    count_webhooks,
    create_team,
    delete_webhook,
    fail_job,
    get_webhook,
    latest_deliveries,
    list_deliveries,
    list_webhooks,
)
from service.db.repos.deliveries import (
    claim_delivery,
    record_attempt,
    requeue_lost_deliveries,
    unnotified_jobs,
)
from service.domain import add_webhook, change_webhook, dispatch_job
from service.errors import NotFoundError, WebhookUrlError
from tests.service.db.rows import add_job, add_model

ALL = ["job.succeeded", "job.failed", "job.cancelled", "job.regressed"]


@pytest.fixture
def teams(session: Session) -> tuple[Team, Team]:
    return create_team(session, name="acme"), create_team(session, name="other")


def _hook(session: Session, team: Team, events: list[str] = ALL) -> Webhook:
    return add_webhook(session, team=team, url="https://ci.example/h", events=events)


def _succeed(session: Session, job: Job, regression: dict[str, object] | None = None) -> None:
    values = {"status": JobStatus.SUCCEEDED, "finished_at": utcnow(), "regression": regression}
    chosen = {"metric": 0.9, "payload_bytes": 100, "file_bytes": 900}
    values |= {"result": {"met_targets": True, "chosen": chosen}}
    values |= {"baseline": {"metric": 0.95, "bytes": 1000}}
    session.execute(update(Job).where(Job.id == job.id).values(**values))
    session.commit()


def _deliveries(session: Session) -> list[WebhookDelivery]:
    session.rollback()
    return list(session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_webhooks_are_team_scoped(session: Session, teams: tuple[Team, Team]) -> None:
    acme, other = teams
    hook = _hook(session, acme)
    assert hook.secret.startswith("whsec_") and len(hook.secret) > 40
    assert [w.id for w in list_webhooks(session, team=acme)] == [hook.id]
    assert list_webhooks(session, team=other) == [] and count_webhooks(session, team=other) == 0
    with pytest.raises(NotFoundError, match="GET /v1/webhooks"):
        get_webhook(session, team=other, webhook_id=hook.id)
    with pytest.raises(NotFoundError):
        change_webhook(session, team=other, webhook_id=hook.id, enabled=False)
    changed = change_webhook(session, team=acme, webhook_id=hook.id, events=["job.failed"] * 2)
    assert changed.events == ["job.failed"] and changed.enabled
    with pytest.raises(WebhookUrlError):
        change_webhook(session, team=acme, webhook_id=hook.id, url="ftp://x")
    assert get_webhook(session, team=acme, webhook_id=hook.id).url == "https://ci.example/h"


def test_dispatch_inserts_one_row_per_subscribed_event_once(
    session: Session, teams: tuple[Team, Team]
) -> None:
    acme, other = teams
    everything, failures = _hook(session, acme), _hook(session, acme, ["job.failed"])
    regressions = _hook(session, acme, ["job.regressed"])
    _hook(session, other)  # another team's: never told
    disabled = _hook(session, acme)
    change_webhook(session, team=acme, webhook_id=disabled.id, enabled=False)
    model = add_model(session, acme)
    job = add_job(session, acme, model)
    assert dispatch_job(session, job_id=job.id) == []  # queued: nothing to say yet
    _succeed(session, job, {"regressed": True, "metric_drop": 0.02})
    late = _hook(session, acme)  # created after the job ended: not told
    assert unnotified_jobs(session) == [job.id]
    ids = dispatch_job(session, job_id=job.id)
    rows = _deliveries(session)
    assert [r.id for r in rows] == ids
    assert sorted((r.webhook_id, r.event) for r in rows) == sorted(
        [
            (everything.id, "job.succeeded"),
            (everything.id, "job.regressed"),
            (regressions.id, "job.regressed"),
        ]
    )
    assert failures.id and late.id not in {r.webhook_id for r in rows}
    payload = rows[0].payload
    assert payload["id"] == rows[0].id and payload["event"] == rows[0].event
    body = payload["job"]
    assert body["model"] == {"id": model.id, "name": "digits", "version": 1}
    assert body["chosen"] == {"metric": 0.9, "bytes": 100, "file_bytes": 900}
    assert body["ratio"] == 10.0 and body["met_targets"] is True
    assert body["regression"]["regressed"] is True and body["url"] == f"/v1/jobs/{job.id}"
    assert body["error"] is None and body["status"] == "succeeded"
    assert all(r.status == "pending" and r.attempts == 0 for r in rows)
    # once: a second dispatcher finds notified_at set
    assert dispatch_job(session, job_id=job.id) == [] and len(_deliveries(session)) == 3
    assert unnotified_jobs(session) == []
    # notified_at lost (restored from a backup...): a second dispatch meets the unique
    # (webhook, event, job) in savepoints, inserts nothing and still marks the job
    session.execute(update(Job).where(Job.id == job.id).values(notified_at=None))
    session.commit()
    assert dispatch_job(session, job_id=job.id) == [] and len(_deliveries(session)) == 3
    assert unnotified_jobs(session) == []
    assert count_deliveries(session, webhook=everything) == 2
    newest = max((r for r in rows if r.webhook_id == everything.id), key=lambda r: r.id)
    page = list_deliveries(session, webhook=everything, limit=1)
    assert [d.id for d in page] == [newest.id]
    last = latest_deliveries(session, webhooks=[everything, regressions, failures])
    assert {k: d.id if d else None for k, d in last.items()} == {
        everything.id: newest.id,
        regressions.id: next(r.id for r in rows if r.webhook_id == regressions.id),
        failures.id: None,
    }


def test_failed_and_cancelled_jobs_raise_their_events(
    session: Session, teams: tuple[Team, Team]
) -> None:
    acme, _ = teams
    hook = _hook(session, acme)
    model = add_model(session, acme)
    failed, cancelled = add_job(session, acme, model), add_job(session, acme, model)
    fail_job(session, job_id=failed.id, code="invalid_data", message="labels missing")
    cancel_job(session, job=cancelled)
    assert sorted(unnotified_jobs(session)) == sorted([failed.id, cancelled.id])
    for job in (failed, cancelled):
        dispatch_job(session, job_id=job.id)
    rows = {r.job_id: r for r in _deliveries(session)}
    assert rows[failed.id].event == "job.failed"
    assert rows[failed.id].payload["job"]["error"] == {
        "code": "invalid_data",
        "message": "labels missing",
    }
    assert rows[cancelled.id].event == "job.cancelled"
    assert {r.webhook_id for r in rows.values()} == {hook.id}
    delete_webhook(session, webhook=hook)
    assert _deliveries(session) == []  # the log goes with its webhook


def test_a_claim_is_one_attempt_at_a_time_and_never_after_delivery(
    session: Session, teams: tuple[Team, Team]
) -> None:
    acme, _ = teams
    _hook(session, acme, ["job.cancelled"])
    job = add_job(session, acme, add_model(session, acme))
    cancel_job(session, job=job)
    [delivery_id] = dispatch_job(session, job_id=job.id)
    first = claim_delivery(session, delivery_id=delivery_id, lease_s=15)
    assert first is not None and first[0].attempts == 1 and first[1].url == "https://ci.example/h"
    assert claim_delivery(session, delivery_id=delivery_id, lease_s=15) is None  # leased
    later = utcnow() + timedelta(seconds=60)
    record_attempt(
        session,
        delivery_id=delivery_id,
        status=DeliveryStatus.PENDING,
        response_code=500,
        error="HTTP 500: oops",
        next_attempt_at=later,
    )
    assert claim_delivery(session, delivery_id=delivery_id, lease_s=15) is None  # not due
    # the sweep: nothing lost yet; once overdue, one sweeper takes it and makes it due now
    assert requeue_lost_deliveries(session, before=utcnow()) == []
    assert requeue_lost_deliveries(session, before=later + timedelta(seconds=1)) == [delivery_id]
    assert requeue_lost_deliveries(session, before=utcnow() - timedelta(seconds=5)) == []
    second = claim_delivery(session, delivery_id=delivery_id, lease_s=15)
    assert second is not None and second[0].attempts == 2
    record_attempt(
        session,
        delivery_id=delivery_id,
        status=DeliveryStatus.DELIVERED,
        response_code=200,
        error=None,
    )
    [row] = _deliveries(session)
    assert (row.status, row.attempts, row.response_code, row.last_error) == (
        "delivered",
        2,
        200,
        None,
    )
    assert row.delivered_at is not None and row.next_attempt_at is None
    assert requeue_lost_deliveries(session, before=utcnow() + timedelta(days=1)) == []
    session.execute(update(WebhookDelivery).values(next_attempt_at=utcnow()))
    session.commit()
    assert claim_delivery(session, delivery_id=delivery_id, lease_s=15) is None  # delivered
