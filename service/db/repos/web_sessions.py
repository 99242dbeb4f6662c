"""Dashboard sign-ins: a random token per browser, stored as its sha256, acting as one API key.

A session is opened with an API key's secret (:func:`open_web_session`) and lives until
it expires, its owner signs out (:func:`close_web_session`) or the key is revoked: the
lookup (:func:`find_web_session`) joins the key and refuses a revoked one, so revoking a
key signs out every browser that used it.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import ApiKey, Team, WebSession
from service.db.repos.keys import hash_secret
from service.db.session import end_reads

__all__ = [
    "KEY_USE_RESOLUTION_S",
    "close_web_session",
    "find_web_session",
    "mark_key_used",
    "open_web_session",
]

KEY_USE_RESOLUTION_S = 60
"""``ApiKey.last_used_at`` is written at most this often per key (seconds)."""


def open_web_session(session: Session, *, key: ApiKey, ttl_s: int) -> tuple[WebSession, str]:
    """Open a dashboard session acting as ``key`` for ``ttl_s`` seconds.

    Returns:
        The committed row and its token (43 URL-safe characters, 256 random bits): the
        cookie's value, returned once and never stored. Sessions that expired are
        deleted on the way.
    """
    end_reads(session)
    now = utcnow()
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    row = WebSession(
        key_id=key.id,
        hash=hash_secret(token),
        csrf=secrets.token_urlsafe(32),
        expires_at=now + timedelta(seconds=ttl_s),
    )
    session.add(row)
    session.commit()
    return row, token


def find_web_session(session: Session, token: str) -> tuple[WebSession, ApiKey, Team] | None:
    """The live session of cookie value ``token``, its key and team; ``None`` otherwise.

    ``None`` for an unknown token, an expired session, or a revoked key. The lookup is
    by the token's sha256 (a unique index), so no comparison leaks timing about it.
    The read transaction is ended before returning, as :func:`~.keys.find_key` does.
    """
    if not token or len(token) > 128:
        return None
    row = session.execute(
        select(WebSession, ApiKey, Team)
        .join(ApiKey, ApiKey.id == WebSession.key_id)
        .join(Team, Team.id == ApiKey.team_id)
        .where(
            WebSession.hash == hash_secret(token),
            WebSession.expires_at > utcnow(),
            ApiKey.revoked_at.is_(None),
        )
    ).first()
    end_reads(session)
    return None if row is None else (row[0], row[1], row[2])


def close_web_session(session: Session, *, token: str) -> None:
    """Delete the session of cookie value ``token`` (signing out); unknown tokens are ignored."""
    end_reads(session)
    session.execute(delete(WebSession).where(WebSession.hash == hash_secret(token)))
    session.commit()


def mark_key_used(session: Session, *, key: ApiKey) -> None:
    """Record that ``key`` authenticated a request now, unless it did in the last minute.

    At most one write per key per :data:`KEY_USE_RESOLUTION_S`: the conditional
    ``UPDATE`` changes no row (and takes no write lock on SQLite) when the recorded
    time is recent, which the in-memory check below skips asking at all.
    """
    now = utcnow()
    cutoff = now - timedelta(seconds=KEY_USE_RESOLUTION_S)
    if key.last_used_at is not None and key.last_used_at >= cutoff:
        return
    end_reads(session)
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key.id,
            (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < cutoff),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()
