"""API schemas of ``/v1/webhooks``: one family per resource, apart from the ORM rows.

Pydantic checks types and lengths; the rules of a webhook (its URL, its events, its
secret) are the domain's (:mod:`service.domain.webhooks`), which answer with their own
stable codes (``invalid_webhook_url``...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DeliveriesPublic",
    "DeliveryPublic",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookPublic",
    "WebhookUpdate",
    "WebhooksPublic",
]

_EVENTS = "job.succeeded, job.failed, job.cancelled, job.regressed"


class WebhookCreate(BaseModel):
    """A receiver of the team's job events."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=4096,
        description="http(s) URL with a host; no user:password, no #fragment, <= 2048 chars",
        examples=["https://ci.example.com/mpq-hook"],
    )
    events: list[str] = Field(
        max_length=16, description=f"one or more of {_EVENTS}", examples=[["job.succeeded"]]
    )
    secret: str | None = Field(
        default=None,
        max_length=1024,
        description="HMAC key of the signatures, 16-255 chars; generated when left out",
    )


class WebhookUpdate(BaseModel):
    """The fields of a webhook to change (the secret cannot be changed: make a new one)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=4096)
    events: list[str] | None = Field(default=None, max_length=16)
    enabled: bool | None = None


class WebhookPublic(BaseModel):
    """A webhook, without its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    events: list[str]
    enabled: bool
    created_at: datetime


class WebhookCreated(WebhookPublic):
    """A webhook just created, with its secret: shown this once, never again."""

    secret: str = Field(description="keys MPQ-Signature; store it now, it is not shown again")


class WebhooksPublic(BaseModel):
    """A page of the team's webhooks, newest first, and how many it has in all."""

    data: list[WebhookPublic]
    count: int


class DeliveryPublic(BaseModel):
    """One event sent (or being sent) to a webhook, and how its attempts went."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    event: str
    job_id: int | None
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    response_code: int | None = Field(description="HTTP status of the last answer (null: none)")
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="the JSON document posted")


class DeliveriesPublic(BaseModel):
    """A page of a webhook's deliveries, newest first, and how many it has in all."""

    data: list[DeliveryPublic]
    count: int
