"""API keys: a team's secrets, stored as hashes, found by their clear prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import ApiKey, Team
from service.db.repos._names import check_label
from service.db.repos._scoped import Scoped
from service.db.session import end_reads

__all__ = [
    "KEY_PREFIX",
    "create_api_key",
    "find_key",
    "find_team_by_key",
    "get_api_key",
    "hash_secret",
    "list_api_keys",
    "revoke_api_key",
]

KEYS = Scoped(
    ApiKey,
    owner="team_id",
    key="id",
    order=(ApiKey.created_at.desc(), ApiKey.id.desc()),
    missing=lambda team_id, key_id: f"API key {key_id} not found",
)

KEY_PREFIX = "mpq_"
"""How every secret starts."""
# Characters of a secret kept in clear (``ApiKey.prefix``): "mpq_" and 8 random ones.
SHOWN_CHARS = len(KEY_PREFIX) + 8


def hash_secret(secret: str) -> str:
    """Hex sha256 of an API key's secret: what the database stores instead of it.

    A fast hash is enough: secrets are 256 random bits, not guessable passwords.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, *, team: Team, name: str) -> tuple[ApiKey, str]:
    """Create an API key for ``team``.

    The secret is ``mpq_`` followed by 43 URL-safe characters (256 random bits). It is
    returned once and never stored: the row keeps its sha256 and its first characters.

    Args:
        session: the database session.
        team: the team the key acts for.
        name: a label for people telling keys apart (1 to 255 characters).

    Returns:
        The committed row and the secret.

    Raises:
        InvalidNameError: ``name`` is empty, too long or has control characters.
    """
    end_reads(session)
    check_label(name, what="key")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(team_id=team.id, name=name, prefix=secret[:SHOWN_CHARS], hash=hash_secret(secret))
    session.add(key)
    session.commit()
    return key, secret


def find_key(session: Session, secret: str) -> tuple[ApiKey, Team] | None:
    """The live API key ``secret`` and its team, or ``None`` (unknown, malformed, revoked).

    Candidates are found by the clear prefix; hashes are compared in constant time.

    The lookup's read transaction is ended before returning (``session`` must hold no
    changes), so that its pooled connection goes back to the pool: the API runs this
    dependency and the route in different threadpool threads, and a request holding a
    connection while it waits for a thread, when the threads all wait for a connection,
    stalls every request until the pool's checkout timeout (seen with 50 clients).
    """
    if not secret.startswith(KEY_PREFIX) or len(secret) <= SHOWN_CHARS:
        return None
    digest = hash_secret(secret)
    rows = session.execute(
        select(ApiKey, Team)
        .join(Team, Team.id == ApiKey.team_id)
        .where(ApiKey.prefix == secret[:SHOWN_CHARS], ApiKey.revoked_at.is_(None))
    ).all()
    end_reads(session)
    for key, team in rows:
        if hmac.compare_digest(key.hash, digest):
            return key, team
    return None


def find_team_by_key(session: Session, secret: str) -> Team | None:
    """The team an API key acts for, or ``None`` for an unknown, malformed or revoked key."""
    found = find_key(session, secret)
    return None if found is None else found[1]


def revoke_api_key(session: Session, *, key: ApiKey) -> ApiKey:
    """Revoke ``key`` (idempotent: the first revocation time is kept)."""
    end_reads(session)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key


def list_api_keys(session: Session, *, team: Team) -> list[ApiKey]:
    """``team``'s keys, live ones first, each group newest first.

    Rows are read afresh even where the session holds them already: the request's own
    key, loaded to authenticate it, has since had ``last_used_at`` written by a bulk
    ``UPDATE`` (:func:`~service.db.repos.web_sessions.mark_key_used`) that leaves the
    loaded copy as it was.
    """
    keys = list(
        session.scalars(
            select(ApiKey)
            .where(ApiKey.team_id == team.id)
            .order_by(ApiKey.revoked_at.is_not(None), ApiKey.created_at.desc(), ApiKey.id.desc())
            .execution_options(populate_existing=True)
        )
    )
    end_reads(session)
    return keys


def get_api_key(session: Session, *, team: Team, key_id: int) -> ApiKey:
    """Key ``key_id`` of ``team``.

    Raises:
        NotFoundError: no such key, or it is another team's (indistinguishable).
    """
    key = KEYS.get(session, team.id, key_id)
    end_reads(session)
    return key
