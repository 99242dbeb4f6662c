"""Webhook deliveries on the workers: dispatch a finished job, attempt a delivery, sweep.

- :func:`notify` (right after a job ends on a worker, and from the sweep): the
  transactional outbox of :func:`service.domain.dispatch_job`, then one
  ``mpq.deliver_webhook`` message per new delivery row.
- :func:`deliver` (the body of ``mpq.deliver_webhook``): ONE attempt. The row is
  claimed first (:func:`service.db.repos.webhooks.claim_delivery`: ``attempts + 1``,
  leased past the attempt's deadline), so a delivered row is never sent again and two
  messages for one row never send it twice at once. A 2xx answer: ``delivered``. Anything
  else (another status, no answer within ``webhook_timeout_s``): ``last_error`` and
  ``response_code`` are stored and, while attempts remain, the row is due again after
  ``backoff_s(attempts)`` and the task is sent again with that countdown; after
  ``webhook_max_attempts`` it is ``failed``.
- :func:`sweep_webhooks` (the recovery sweeper's thread, every ``recovery_interval_s``):
  dispatches final jobs nobody notified (cancelled while the queue was down -- the API
  dispatches a cancel itself --, failed by recovery, or a worker that died between
  finishing a job and dispatching it), and re-sends pending deliveries due more than
  ``grace_s`` ago (a lost message, a worker that died mid-attempt).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from service.db.base import utcnow
from service.db.models import DeliveryStatus
from service.db.repos import deliveries as hooks
from service.domain import notify_job
from service.domain.webhook_events import backoff_s
from service.domain.webhooks import canonical_body, signature_header
from service.queue import DELIVER_WEBHOOK
from service.settings import Settings
from workers.context import Send
from workers.webhook_http import post

__all__ = ["LEASE_MARGIN_S", "Later", "deliver", "notify", "sweep_webhooks"]

log = logging.getLogger("workers.webhooks")

LEASE_MARGIN_S = 10.0
"""A claimed attempt's lease outlasts its deadline by this much (seconds)."""

USER_AGENT = "mpq-webhooks"

Later = Callable[[int, float], None]
"""``later(delivery_id, delay_s)``: send ``mpq.deliver_webhook`` again after ``delay_s``."""


def notify(sessions: sessionmaker[Session], send: Send, job_id: int) -> list[int]:
    """Dispatch final job ``job_id`` to its webhooks (once) and send the new deliveries
    (:func:`service.domain.notify_job` in a session of its own); never raises."""
    try:
        with sessions() as session:
            return notify_job(session, send, job_id=job_id)
    except Exception as exc:  # the session could not even be opened
        log.warning("job %s: webhooks not dispatched (%s); the sweep will", job_id, exc)
        return []


def deliver(
    sessions: sessionmaker[Session], settings: Settings, delivery_id: int, *, later: Later
) -> str:
    """One attempt at delivery ``delivery_id``; return what became of it.

    ``skipped`` (not due: delivered, failed, or another message's attempt holds it),
    ``delivered``, ``failed``, or ``retry in <s> s``.
    """
    lease = settings.webhook_timeout_s + LEASE_MARGIN_S
    with sessions() as session:
        claimed = hooks.claim_delivery(session, delivery_id=delivery_id, lease_s=lease)
    if claimed is None:
        return "skipped"
    delivery, webhook = claimed
    if not webhook.enabled:
        _record(sessions, delivery_id, DeliveryStatus.FAILED, None, "the webhook is disabled")
        return "failed"
    body = canonical_body(delivery.payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "MPQ-Event": delivery.event,
        "MPQ-Delivery": str(delivery.id),
        "MPQ-Signature": signature_header(webhook.secret, body, int(time.time())),
    }
    answer = post(
        webhook.url,
        body,
        headers,
        timeout_s=settings.webhook_timeout_s,
        allowed_networks=settings.webhook_networks,
    )
    if answer.status is not None and 200 <= answer.status < 300:
        _record(sessions, delivery_id, DeliveryStatus.DELIVERED, answer.status, None)
        return "delivered"
    # The answer's body is not kept: a URL may name a server inside the network, and
    # the log must not become a way to read it.
    error = answer.error or f"HTTP {answer.status}"
    if delivery.attempts >= settings.webhook_max_attempts:
        _record(sessions, delivery_id, DeliveryStatus.FAILED, answer.status, error)
        log.warning(
            "delivery %s failed after %s attempts: %s", delivery_id, delivery.attempts, error
        )
        return "failed"
    wait = backoff_s(delivery.attempts, base_s=settings.webhook_backoff_s)
    due = utcnow() + timedelta(seconds=wait)
    _record(sessions, delivery_id, DeliveryStatus.PENDING, answer.status, error, due)
    try:
        later(delivery_id, wait)
    except Exception as exc:
        log.warning("delivery %s: retry not sent (%s); the sweep will", delivery_id, exc)
    return f"retry in {wait:g} s"


def _record(
    sessions: sessionmaker[Session],
    delivery_id: int,
    status: DeliveryStatus,
    code: int | None,
    error: str | None,
    due: datetime | None = None,
) -> None:
    with sessions() as session:
        hooks.record_attempt(
            session,
            delivery_id=delivery_id,
            status=status,
            response_code=code,
            error=None if error is None else error[:500],
            next_attempt_at=due,
        )


def sweep_webhooks(sessions: sessionmaker[Session], settings: Settings, send: Send) -> int:
    """Dispatch un-notified final jobs and re-send lost deliveries; return messages sent."""
    sent = 0
    with sessions() as session:
        jobs = hooks.unnotified_jobs(session)
    for job_id in jobs:
        sent += len(notify(sessions, send, job_id))
    before = utcnow() - timedelta(seconds=settings.grace_s)
    with sessions() as session:
        lost = hooks.requeue_lost_deliveries(session, before=before)
    for delivery_id in lost:
        log.warning("delivery %s is overdue (message lost?); sending it again", delivery_id)
        send(DELIVER_WEBHOOK, [delivery_id])
        sent += 1
    return sent
