"""``mpq admin`` and ``mpq db``: team and key administration, and schema migrations.

``mpq db upgrade [REV]`` migrates the settings' database to ``REV`` (default ``head``);
``mpq db downgrade REV`` migrates it down (``base`` empties it). ``mpq admin
create-team NAME`` and ``mpq admin create-key --team NAME [--name LABEL]`` need a
migrated database; the key's secret goes to stdout alone (so scripts can capture it)
and is never shown again.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from service.settings import get_settings

__all__ = ["add_admin_commands"]


def add_admin_commands(subparsers: Any) -> None:
    """Register ``mpq admin ...`` and ``mpq db ...`` on the CLI's subparsers."""
    admin = subparsers.add_parser("admin", help="create teams and API keys")
    admin_sub = admin.add_subparsers(required=True, metavar="ACTION")
    team = admin_sub.add_parser("create-team", help="create a team")
    team.add_argument("name", help="letters, digits, '_', '.' or '-'; at most 64 characters")
    team.set_defaults(func=_create_team)
    key = admin_sub.add_parser("create-key", help="create an API key and print its secret once")
    key.add_argument("--team", required=True, help="the team the key acts for")
    key.add_argument("--name", default="default", help="a label to tell keys apart")
    key.set_defaults(func=_create_key)

    db = subparsers.add_parser("db", help="migrate the service database (Alembic)")
    db_sub = db.add_subparsers(required=True, metavar="ACTION")
    up = db_sub.add_parser("upgrade", help="migrate up to REV (default: the latest)")
    up.add_argument("revision", nargs="?", default="head", metavar="REV")
    up.set_defaults(func=_db_upgrade)
    down = db_sub.add_parser("downgrade", help="migrate down to REV ('base' drops everything)")
    down.add_argument("revision", metavar="REV")
    down.set_defaults(func=_db_downgrade)


@contextlib.contextmanager
def _session() -> Iterator[Session]:
    from service.db import make_engine, session_factory
    from service.db.migrate import check_schema

    engine = make_engine(get_settings().database_url)
    try:
        check_schema(engine)
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _create_team(args: argparse.Namespace) -> int:
    from service.db import create_team

    with _session() as session:
        team = create_team(session, name=args.name)
    print(f"created team {team.name!r} (id {team.id})")
    return 0


def _create_key(args: argparse.Namespace) -> int:
    from service.db import create_api_key, get_team_by_name

    with _session() as session:
        team = get_team_by_name(session, args.team)
        key, secret = create_api_key(session, team=team, name=args.name)
    print(secret)
    print(
        f"created key {key.name!r} ({key.prefix}...) for team {team.name!r}. Store the secret "
        "printed above now: it is not kept and cannot be shown again.",
        file=sys.stderr,
    )
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from service.db.migrate import upgrade

    url = get_settings().database_url
    upgrade(url, args.revision)
    print(f"migrated {_shown(url)} up to {args.revision}")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    from service.db.migrate import downgrade

    url = get_settings().database_url
    downgrade(args.revision, url)
    print(f"migrated {_shown(url)} down to {args.revision}")
    return 0


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
