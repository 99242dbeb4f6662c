"""Alembic's entry point: run MPQ's migrations against one database.

The URL, first match wins: a connection handed over in ``config.attributes["connection"]``
(tests), ``config.attributes["url"]`` (``service.db.migrate``), ``alembic -x url=...``,
then MPQ's settings (``MPQ_DATABASE_URL``, else the SQLite file in the data directory).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy.engine import Connection

from service.db import Base, make_engine
from service.settings import get_settings

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    return str(url) if url else get_settings().database_url


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite alters tables by copying them: needed for any later column change there.
        render_as_batch=sqlite,
    )
    with _sqlite_foreign_keys_off(connection), context.begin_transaction():
        context.run_migrations()
        if sqlite:
            _check_foreign_keys(connection)


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    # A batch migration copies a table and drops the old one. With foreign keys on, that
    # DROP deletes the rows first and cascades: altering `jobs` would delete every
    # artifact row. SQLite's own recipe for altering a table turns them off around the
    # transaction (the pragma is ignored inside one) and checks them before the commit.
    # In a caller's transaction the pragma would be ignored: that caller sees to it.
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"the migration broke foreign keys (table, rowid, parent): {broken}")


def run_migrations_offline() -> None:
    """Print the SQL of the migrations (``alembic upgrade head --sql``) instead of running it."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a live connection."""
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
