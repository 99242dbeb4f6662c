"""Alembic migrations: empty database → head → base, and head matches the ORM models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from service.db import Base, make_engine
from service.db.migrate import alembic_config, downgrade, upgrade

TABLES = {"teams", "api_keys", "models", "datasets", "jobs", "artifacts"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_the_scripts_form_one_line_of_history() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert len(scripts.get_heads()) == 1
    assert scripts.get_base() == "0001"


def test_upgrade_an_empty_database_to_head_and_back_down_to_base(db_url: str) -> None:
    assert _tables(db_url) == set()
    upgrade(db_url)
    assert _tables(db_url) == TABLES | {"alembic_version"}
    downgrade("base", db_url)
    # Only Alembic's own bookkeeping is left, and it records no revision.
    assert _tables(db_url) == {"alembic_version"}
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 0
            if conn.dialect.name == "postgresql":
                assert inspect(conn).get_sequence_names() == []
    finally:
        engine.dispose()
    upgrade(db_url)  # and up again: the downgrade left nothing in the way
    assert _tables(db_url) == TABLES | {"alembic_version"}


def _diffs(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_the_migrated_schema_matches_the_orm_models(db_url: str) -> None:
    # The comparison does see differences: on the empty database, every table is missing.
    added = {d[1].name for d in _diffs(db_url) if isinstance(d, tuple) and d[0] == "add_table"}
    assert added == TABLES
    upgrade(db_url)
    assert _diffs(db_url) == []


def test_sqlite_connections_use_wal_normal_sync_and_foreign_keys(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    finally:
        engine.dispose()
