"""Webhooks: a team's receivers of job events, and each one's delivery log (read side).

Reads are team-scoped (:func:`get_webhook`, :func:`list_webhooks`...); a delivery is
read through its webhook. The outbox and the delivery claims, which the workers use
for every team, are in :mod:`service.db.repos.deliveries`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from service.db.models import ApiKey, Team, Webhook, WebhookDelivery
from service.db.repos._scoped import Scoped
from service.db.session import end_reads

__all__ = [
    "count_deliveries",
    "count_webhooks",
    "create_webhook",
    "delete_webhook",
    "get_webhook",
    "list_deliveries",
    "list_webhooks",
    "update_webhook",
]

WEBHOOKS = Scoped(
    Webhook,
    owner="team_id",
    key="id",
    order=(Webhook.created_at.desc(), Webhook.id.desc()),
    missing=lambda _, hook_id: f"no webhook with id {hook_id}; list yours with GET /v1/webhooks",
)
DELIVERIES = Scoped(
    WebhookDelivery,
    owner="webhook_id",
    key="id",
    order=(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()),
    missing=lambda hook_id, d: f"no delivery {d} of webhook {hook_id}",
)


def create_webhook(
    session: Session,
    *,
    team: Team,
    url: str,
    events: list[str],
    secret: str,
    created_by: ApiKey | None = None,
) -> Webhook:
    """Record an enabled webhook of ``team`` (committed)."""
    end_reads(session)
    row = Webhook(
        team_id=team.id,
        url=url,
        events=events,
        secret=secret,
        enabled=True,
        created_by_key_id=None if created_by is None else created_by.id,
    )
    session.add(row)
    session.commit()
    return row


def get_webhook(session: Session, *, team: Team, webhook_id: int) -> Webhook:
    """Webhook ``webhook_id`` of ``team``; :class:`NotFoundError` otherwise (another team's too)."""
    return WEBHOOKS.get(session, team.id, webhook_id)


def list_webhooks(
    session: Session, *, team: Team, skip: int = 0, limit: int = 100
) -> list[Webhook]:
    """``team``'s webhooks, newest first, paginated."""
    return WEBHOOKS.list(session, team.id, skip=skip, limit=limit)


def count_webhooks(session: Session, *, team: Team) -> int:
    """How many webhooks ``team`` has."""
    return WEBHOOKS.count(session, team.id)


def update_webhook(session: Session, *, webhook: Webhook, changes: dict[str, Any]) -> Webhook:
    """Set ``changes`` (``url``, ``events``, ``enabled``: already validated) and commit."""
    assert set(changes) <= {"url", "events", "enabled"}, sorted(changes)
    end_reads(session)
    session.execute(update(Webhook).where(Webhook.id == webhook.id).values(**changes))
    session.commit()
    session.refresh(webhook)
    return webhook


def delete_webhook(session: Session, *, webhook: Webhook) -> None:
    """Delete ``webhook`` and its delivery log (committed)."""
    end_reads(session)
    session.delete(webhook)
    session.commit()


def list_deliveries(
    session: Session, *, webhook: Webhook, skip: int = 0, limit: int = 100
) -> list[WebhookDelivery]:
    """``webhook``'s deliveries, newest first, paginated."""
    return DELIVERIES.list(session, webhook.id, skip=skip, limit=limit)


def latest_deliveries(
    session: Session, *, webhooks: list[Webhook]
) -> dict[int, WebhookDelivery | None]:
    """Each webhook's newest delivery (``None``: none yet), by webhook id, in one query."""
    latest = DELIVERIES.latest(session, [w.id for w in webhooks], 1)
    return {hook_id: rows[0] if rows else None for hook_id, rows in latest.items()}


def count_deliveries(session: Session, *, webhook: Webhook) -> int:
    """How many deliveries ``webhook`` has."""
    return DELIVERIES.count(session, webhook.id)
