"""Webhook deliveries for the workers: the transactional outbox and one-attempt claims.

These act for every team (the workers dispatch every team's jobs):

- :func:`mark_notified`, :func:`subscribers` and :func:`add_delivery` run in the
  *caller's* transaction (:func:`service.domain.dispatch_job` owns it): a job's
  ``notified_at`` and its delivery rows are committed together, or neither is.
- :func:`claim_delivery` is one guarded ``UPDATE``: a pending row whose
  ``next_attempt_at`` has come is leased (``attempts + 1``, ``next_attempt_at`` moved
  past the attempt's deadline), so of two messages for one row exactly one sends it,
  and a delivered or failed row is never sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import DeliveryStatus, Job, Webhook, WebhookDelivery
from service.db.repos.job_states import FINAL
from service.db.session import end_reads

__all__ = [
    "CLOCK_SKEW",
    "add_delivery",
    "claim_delivery",
    "mark_notified",
    "record_attempt",
    "requeue_lost_deliveries",
    "subscribers",
    "unnotified_jobs",
]

CLOCK_SKEW = timedelta(seconds=1)
"""A message may arrive this much before its row's ``next_attempt_at`` and still claim it."""


def unnotified_jobs(session: Session, *, limit: int = 100) -> list[int]:
    """Ids of jobs in a final state whose webhooks have not been dispatched, oldest first."""
    query = (
        select(Job.id)
        .where(Job.status.in_(FINAL), Job.notified_at.is_(None))
        .order_by(Job.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def mark_notified(session: Session, *, job_id: int) -> bool:
    """Set final job ``job_id``'s ``notified_at`` unless set; True if this call set it.

    One guarded ``UPDATE`` in the caller's transaction: of two dispatchers one wins.
    """
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(FINAL), Job.notified_at.is_(None))
        .values(notified_at=utcnow())
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def subscribers(session: Session, *, team_id: int, before: datetime) -> list[Webhook]:
    """``team_id``'s enabled webhooks created at or before ``before`` (the job's end)."""
    query = select(Webhook).where(
        Webhook.team_id == team_id, Webhook.enabled.is_(True), Webhook.created_at <= before
    )
    return list(session.scalars(query.order_by(Webhook.id)))


def add_delivery(
    session: Session,
    *,
    webhook_id: int,
    event: str,
    job_id: int,
    payload: Callable[[int], dict[str, Any]],
) -> int | None:
    """Insert the pending delivery of ``event`` of job ``job_id`` to ``webhook_id``.

    ``payload(delivery_id)`` makes the document posted (it names its own id). Runs in a
    savepoint of the caller's transaction; ``None`` when the row exists already (the
    unique (webhook, event, job)).
    """
    try:
        with session.begin_nested():
            row = WebhookDelivery(
                webhook_id=webhook_id,
                event=event,
                job_id=job_id,
                payload={},
                status=DeliveryStatus.PENDING.value,
                attempts=0,
                next_attempt_at=utcnow(),
            )
            session.add(row)
            session.flush()
            row.payload = payload(row.id)
            session.flush()
    except IntegrityError:
        return None
    return row.id


def claim_delivery(
    session: Session, *, delivery_id: int, lease_s: float
) -> tuple[WebhookDelivery, Webhook] | None:
    """Lease pending delivery ``delivery_id`` for one attempt, or ``None`` (not due, done).

    Sets ``attempts + 1`` and ``next_attempt_at = now + lease_s`` (past the attempt's
    deadline, so a duplicate message finds the row not due). Committed.
    """
    end_reads(session)
    now = utcnow()
    statement = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
            WebhookDelivery.next_attempt_at <= now + CLOCK_SKEW,
        )
        .values(
            attempts=WebhookDelivery.attempts + 1,
            next_attempt_at=now + timedelta(seconds=lease_s),
        )
    )
    claimed = bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]
    session.commit()
    if not claimed:
        return None
    delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
    assert delivery is not None  # just updated; a cascade delete would have removed both
    webhook = session.get(Webhook, delivery.webhook_id, populate_existing=True)
    assert webhook is not None
    session.commit()
    return delivery, webhook


def record_attempt(
    session: Session,
    *,
    delivery_id: int,
    status: DeliveryStatus,
    response_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None = None,
) -> None:
    """Store the outcome of a claimed attempt: ``delivered``, ``failed``, or ``pending`` again.

    ``next_attempt_at`` is when a pending one is due again (NULL otherwise). Committed.
    """
    end_reads(session)
    values: dict[str, Any] = {
        "status": status.value,
        "response_code": response_code,
        "last_error": error,
        "next_attempt_at": next_attempt_at if status == DeliveryStatus.PENDING else None,
    }
    if status == DeliveryStatus.DELIVERED:
        values["delivered_at"] = utcnow()
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
        )
        .values(**values)
    )
    session.commit()


def requeue_lost_deliveries(session: Session, *, before: datetime, limit: int = 100) -> list[int]:
    """Pending deliveries due before ``before`` (their message presumed lost): ids to send.

    Each one's ``next_attempt_at`` is set to now in a guarded ``UPDATE``, so of several
    sweepers one re-sends it, and it is presumed lost again only after as long. Committed.
    """
    end_reads(session)
    query = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING.value,
            WebhookDelivery.next_attempt_at < before,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    ids, now = list(session.scalars(query)), utcnow()
    taken = []
    for delivery_id in ids:
        statement = (
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.PENDING.value,
                WebhookDelivery.next_attempt_at < before,
            )
            .values(next_attempt_at=now)
        )
        if session.execute(statement).rowcount:  # type: ignore[attr-defined]
            taken.append(delivery_id)
    session.commit()
    return taken
