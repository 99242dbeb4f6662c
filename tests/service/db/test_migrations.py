"""Alembic migrations: empty database → head → base, and head matches the ORM models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from service.db import Base, make_engine
from service.db.migrate import alembic_config, downgrade, upgrade

TABLES = {
    "teams",
    "api_keys",
    "models",
    "datasets",
    "jobs",
    "artifacts",
    "web_sessions",
    "model_aliases",
    "schedules",
    "schedule_runs",
    "webhooks",
    "webhook_deliveries",
}


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


_ROWS = [
    "INSERT INTO teams (id, name, created_at) VALUES (1, 't', '2026-01-01')",
    "INSERT INTO models (id, team_id, name, version, kind, sha256, size_bytes, blob_path,"
    " inventory, created_at) VALUES (1, 1, 'm', 1, 'pt2', 'x', 1, 'b', '{}', '2026-01-01')",
    "INSERT INTO datasets (id, team_id, name, sha256, size_bytes, blob_path, num_samples,"
    " inputs, created_at) VALUES (1, 1, 'd', 'x', 1, 'b', 1, '{}', '2026-01-01')",
    "INSERT INTO jobs (id, team_id, model_id, dataset_id, status, config, trials_done,"
    " trials_total, created_at) VALUES (1, 1, 1, 1, 'succeeded', '{}', 1, 1, '2026-01-01')",
    "INSERT INTO artifacts (id, job_id, name, blob_path, size_bytes, sha256, created_at)"
    " VALUES (1, 1, 'model.mpq', 'b', 1, 'x', '2026-01-01')",
]


def _run(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = conn.execute(text(statement))
                rows = [tuple(r) for r in result] if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


def test_0003_adds_preparing_and_progress_and_back_keeping_every_row(db_url: str) -> None:
    upgrade(db_url, "0002")
    _run(db_url, *_ROWS)
    with pytest.raises(IntegrityError):  # the state does not exist yet
        _run(db_url, "UPDATE jobs SET status = 'preparing' WHERE id = 1")
    upgrade(db_url, "0003")
    # SQLite copies the jobs table to change its CHECK: no row may be lost, nor any
    # artifact row through its ON DELETE CASCADE foreign key.
    assert _run(db_url, "SELECT count(*) FROM artifacts") == [(1,)]
    progress = '{"phase": "preparing", "step": "sensitivity", "done": 3, "total": 8}'
    _run(db_url, f"UPDATE jobs SET status = 'preparing', progress = '{progress}' WHERE id = 1")
    assert _run(db_url, "SELECT status FROM jobs") == [("preparing",)]
    with pytest.raises(IntegrityError):
        _run(db_url, "UPDATE jobs SET status = 'paused' WHERE id = 1")
    downgrade("0002", db_url)
    # A preparing job goes back to queued, the state that revision knew it in.
    assert _run(db_url, "SELECT id, status FROM jobs") == [(1, "queued")]
    assert _run(db_url, "SELECT count(*) FROM artifacts") == [(1,)]
    assert "progress" not in {c["name"] for c in _columns(db_url, "jobs")}
    with pytest.raises(IntegrityError):
        _run(db_url, "UPDATE jobs SET status = 'preparing' WHERE id = 1")


def _columns(url: str, table: str) -> list[dict[str, object]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(inspect(conn).get_columns(table))  # type: ignore[arg-type]
    finally:
        engine.dispose()


def test_0005_marks_jobs_that_ended_before_webhooks_as_notified(db_url: str) -> None:
    upgrade(db_url, "0004")
    _run(db_url, *_ROWS[:4])
    _run(
        db_url,
        "INSERT INTO jobs (id, team_id, model_id, dataset_id, status, config, trials_done,"
        " trials_total, created_at) VALUES (2, 1, 1, 1, 'running', '{}', 0, 1, '2026-01-02')",
    )
    upgrade(db_url, "0005")
    rows = _run(db_url, "SELECT id, notified_at IS NOT NULL FROM jobs ORDER BY id")
    assert [(i, bool(n)) for i, n in rows] == [(1, True), (2, False)]  # the running one: later
    downgrade("0004", db_url)
    assert _run(db_url, "SELECT count(*) FROM jobs") == [(2,)]
