"""Engines and sessions for the service database (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from service.private_files import make_private_dir, make_private_file

__all__ = ["make_engine", "session_factory"]

# How long a SQLite writer waits for another one's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0


def make_engine(
    url: str,
    *,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    pool_timeout_s: float | None = None,
    **kwargs: Any,
) -> Engine:
    """Create an engine for ``url``; on SQLite, tuned for one file shared by processes.

    Every SQLite connection gets ``journal_mode=WAL`` (readers never block the writer),
    ``synchronous=NORMAL`` (durable at each checkpoint; safe with WAL) and
    ``foreign_keys=ON`` (SQLite ignores foreign keys otherwise). pysqlite's own
    transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself, so that
    savepoints and transactional DDL work as on PostgreSQL. A missing SQLite file is
    created ``0600``, and its missing parent directories ``0700`` (it holds API key
    hashes: see :mod:`service.private_files`).

    Args:
        url: a SQLAlchemy URL, e.g. ``sqlite:////abs/path/mpq.db`` or
            ``postgresql+psycopg://user@host:5432/db``.
        pool_size: connections the pool keeps open (SQLAlchemy's default, 5, if ``None``).
        max_overflow: connections it may open beyond ``pool_size`` (default 10).
        pool_timeout_s: how long a checkout waits for a free connection before
            :class:`sqlalchemy.exc.TimeoutError` (default 30). The three apply to a
            queue pool only: ignored for an in-memory SQLite database or a ``poolclass``
            given in ``kwargs``.
        **kwargs: passed on to :func:`sqlalchemy.create_engine`.

    Returns:
        The engine (its pool opens connections lazily).
    """
    parsed = make_url(url)
    database = parsed.database
    sqlite = parsed.get_backend_name() == "sqlite"
    in_memory = sqlite and (not database or database == ":memory:" or "mode=memory" in database)
    if "poolclass" not in kwargs and not in_memory:
        pool = {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": pool_timeout_s,
        }
        kwargs |= {k: v for k, v in pool.items() if v is not None}
    if not sqlite:
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)
    if database and database != ":memory:" and not database.startswith("file:"):
        make_private_file(make_private_dir(Path(database).parent) / Path(database).name)
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Outside any transaction: PRAGMA journal_mode cannot change inside one.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def end_reads(session: Session) -> None:
    """End ``session``'s read transaction before it writes (it must hold no changes).

    On SQLite in WAL mode a transaction that has read and then writes fails at once with
    "database is locked" when another connection committed since its read began (its
    snapshot cannot become a write); a fresh transaction instead waits for the write lock
    (the busy timeout). With workers writing heartbeats every few seconds that is the
    common case, so every repository function that writes starts here. On PostgreSQL it
    only ends a read-only transaction early. Rows read before stay usable
    (``expire_on_commit=False``).
    """
    session.commit()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session maker bound to ``engine``; objects stay readable after commit.

    ``expire_on_commit=False`` because repository functions commit and hand rows back to
    callers (routes, the CLI) that read them after the transaction is over.
    """
    return sessionmaker(engine, expire_on_commit=False)
