"""``/v1/webhooks``: a team's receivers of job events, and each one's delivery log."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from service.api.deps import CurrentKey, CurrentTeam, SessionDep, SettingsDep
from service.api.params import Limit, Skip, WebhookId
from service.api.responses import errors
from service.db import repos
from service.domain import add_webhook, change_webhook
from service.schemas_webhooks import (
    DeliveriesPublic,
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhooksPublic,
    WebhookUpdate,
)

__all__ = ["router"]

router = APIRouter(prefix="/webhooks", tags=["webhooks"], responses=errors(401, 422, 429, 503))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookCreated)
def create_webhook(
    request: WebhookCreate,
    session: SessionDep,
    team: CurrentTeam,
    key: CurrentKey,
    settings: SettingsDep,
) -> WebhookCreated:
    """Register `url` for `events`; the answer shows the `secret`, this once.

    Every delivery is signed with it (`MPQ-Signature`, see docs/webhooks.md). A bad URL
    (or one naming a loopback, private or link-local address the service's operator has
    not allowed) answers 422 `invalid_webhook_url`; bad events `invalid_webhook_events`; a secret of
    the wrong length `invalid_webhook_secret`.
    """
    webhook = add_webhook(
        session,
        team=team,
        url=request.url,
        events=request.events,
        secret=request.secret,
        created_by=key,
        allowed_networks=settings.webhook_networks,
    )
    return WebhookCreated.model_validate(webhook)


@router.get("", response_model=WebhooksPublic)
def list_webhooks(
    session: SessionDep, team: CurrentTeam, skip: Skip = 0, limit: Limit = 100
) -> WebhooksPublic:
    """The team's webhooks, newest first (without their secrets)."""
    rows = repos.list_webhooks(session, team=team, skip=skip, limit=limit)
    count = repos.count_webhooks(session, team=team)
    return WebhooksPublic(data=[WebhookPublic.model_validate(w) for w in rows], count=count)


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=errors(404))
def get_webhook(webhook_id: WebhookId, session: SessionDep, team: CurrentTeam) -> WebhookPublic:
    """One webhook of the team (without its secret)."""
    return WebhookPublic.model_validate(
        repos.get_webhook(session, team=team, webhook_id=webhook_id)
    )


@router.patch("/{webhook_id}", response_model=WebhookPublic, responses=errors(404))
def update_webhook(
    webhook_id: WebhookId,
    request: WebhookUpdate,
    session: SessionDep,
    team: CurrentTeam,
    settings: SettingsDep,
) -> WebhookPublic:
    """Change a webhook's `url`, `events` or `enabled` (a disabled one gets no new events)."""
    webhook = change_webhook(
        session,
        team=team,
        webhook_id=webhook_id,
        url=request.url,
        events=request.events,
        enabled=request.enabled,
        allowed_networks=settings.webhook_networks,
    )
    return WebhookPublic.model_validate(webhook)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
def delete_webhook(webhook_id: WebhookId, session: SessionDep, team: CurrentTeam) -> Response:
    """Delete a webhook and its delivery log; deliveries in flight are dropped."""
    webhook = repos.get_webhook(session, team=team, webhook_id=webhook_id)
    repos.delete_webhook(session, webhook=webhook)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=DeliveriesPublic, responses=errors(404))
def list_deliveries(
    webhook_id: WebhookId,
    session: SessionDep,
    team: CurrentTeam,
    skip: Skip = 0,
    limit: Limit = 100,
) -> DeliveriesPublic:
    """The webhook's deliveries, newest first: event, job, status, attempts, last answer."""
    webhook = repos.get_webhook(session, team=team, webhook_id=webhook_id)
    rows = repos.list_deliveries(session, webhook=webhook, skip=skip, limit=limit)
    count = repos.count_deliveries(session, webhook=webhook)
    return DeliveriesPublic(data=[DeliveryPublic.model_validate(d) for d in rows], count=count)
