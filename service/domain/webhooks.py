"""Webhooks: a team's receivers of job events, checked, stored and signed.

A webhook is a URL, the events it wants (:data:`EVENTS`) and a secret. The secret keys
the signature of every delivery, Stripe-style::

    body      = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    signature = hex(HMAC-SHA256(secret, f"{t}.".encode() + body))
    header    MPQ-Signature: t=<t>,v1=<signature>      (t: unix seconds of the attempt)

so a receiver recomputes it from the raw body and rejects a stale ``t`` (a replay).
The secret is shown once, in the answer that creates the webhook.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from service.db import repos
from service.db.models import ApiKey, Team, Webhook
from service.db.repos import webhooks as hooks
from service.errors import WebhookEventsError, WebhookSecretError, WebhookUrlError
from service.outbound import IPNetwork, literal_address, refusal

__all__ = [
    "EVENTS",
    "add_webhook",
    "canonical_body",
    "change_webhook",
    "check_events",
    "check_url",
    "signature_header",
]

EVENTS = ("job.succeeded", "job.failed", "job.cancelled", "job.regressed")
"""The events a webhook may subscribe to."""
URL_MAX = 2048
SECRET_MIN, SECRET_MAX = 16, 255


def check_url(url: str, allowed_networks: Sequence[IPNetwork] = ()) -> str:
    """``url`` if it is an absolute http(s) URL with a host, no credentials, no fragment,
    whose host -- if written as an address, or ``localhost`` -- is public or inside
    ``allowed_networks`` (:mod:`service.outbound`; a name is checked at each delivery).

    Raises:
        WebhookUrlError: it is not (the message says which rule it breaks).
    """
    shown = url if len(url) <= 100 else url[:100] + "..."
    if len(url) > URL_MAX:
        raise WebhookUrlError(f"url is {len(url):,} characters; at most {URL_MAX:,} are allowed")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise WebhookUrlError(f"url {shown!r} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a port out of range
    except ValueError as exc:
        raise WebhookUrlError(f"url {shown!r} cannot be parsed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookUrlError(f"url {shown!r} must start with http:// or https://")
    if not parts.hostname:
        raise WebhookUrlError(f"url {shown!r} has no host; give one, as in https://ci.example/hook")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlError(
            "url must not carry user:password@; verify deliveries with the MPQ-Signature header"
        )
    if "#" in url:
        raise WebhookUrlError(f"url {shown!r} has a #fragment; remove it (it is never sent)")
    address = literal_address(parts.hostname)
    why = None if address is None else refusal(address, allowed_networks)
    if why is not None:
        raise WebhookUrlError(
            f"url {shown!r} points at {address}, {why}; webhooks go to public addresses "
            "only, unless the service's operator allows that network "
            "(MPQ_WEBHOOK_ALLOWED_NETWORKS)"
        )
    return url


def check_events(events: list[str]) -> list[str]:
    """``events`` de-duplicated in their given order; every one must be in :data:`EVENTS`.

    Raises:
        WebhookEventsError: empty, or an unknown event (named).
    """
    if not events:
        raise WebhookEventsError(f"events is empty; subscribe to one or more of {list(EVENTS)}")
    unknown = [e if len(e) <= 40 else e[:40] + "..." for e in events if e not in EVENTS]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise WebhookEventsError(f"unknown events {unknown[:5]}{more}; choose from {list(EVENTS)}")
    return list(dict.fromkeys(events))


def _check_secret(secret: str | None) -> str:
    if secret is None:
        return "whsec_" + secrets.token_urlsafe(32)
    if not SECRET_MIN <= len(secret) <= SECRET_MAX:
        raise WebhookSecretError(
            f"secret is {len(secret)} characters; give {SECRET_MIN} to {SECRET_MAX}, "
            "or leave it out and one is generated"
        )
    if not (secret.isascii() and secret.isprintable()):
        raise WebhookSecretError(
            "secret must be printable ASCII (letters, digits, punctuation, spaces), "
            "or leave it out and one is generated"
        )
    return secret


def add_webhook(
    session: Session,
    *,
    team: Team,
    url: str,
    events: list[str],
    secret: str | None = None,
    created_by: ApiKey | None = None,
    allowed_networks: Sequence[IPNetwork] = (),
) -> Webhook:
    """Check and record a webhook of ``team`` (committed); a missing ``secret`` is generated.

    ``allowed_networks``: the non-public networks its URL may name (see :func:`check_url`).

    Raises:
        WebhookUrlError, WebhookEventsError, WebhookSecretError: nothing is recorded.
    """
    return hooks.create_webhook(
        session,
        team=team,
        url=check_url(url, allowed_networks),
        events=check_events(events),
        secret=_check_secret(secret),
        created_by=created_by,
    )


def change_webhook(
    session: Session,
    *,
    team: Team,
    webhook_id: int,
    url: str | None = None,
    events: list[str] | None = None,
    enabled: bool | None = None,
    allowed_networks: Sequence[IPNetwork] = (),
) -> Webhook:
    """Change the given fields of ``team``'s webhook ``webhook_id`` (committed).

    ``allowed_networks``: the non-public networks a new URL may name (:func:`check_url`).

    Raises:
        NotFoundError: no such webhook in ``team``.
        WebhookUrlError, WebhookEventsError: nothing is changed.
    """
    webhook = repos.get_webhook(session, team=team, webhook_id=webhook_id)
    changes: dict[str, Any] = {}
    if url is not None:
        changes["url"] = check_url(url, allowed_networks)
    if events is not None:
        changes["events"] = check_events(events)
    if enabled is not None:
        changes["enabled"] = enabled
    if not changes:
        return webhook
    return hooks.update_webhook(session, webhook=webhook, changes=changes)


def canonical_body(payload: dict[str, Any]) -> bytes:
    """The bytes posted for ``payload``: compact, keys sorted, ASCII (what is signed)."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<timestamp>,v1=<hex HMAC-SHA256(secret, f"{timestamp}." + body)>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
