"""Schedule and alias repositories on SQLite and PostgreSQL: uniqueness, cascades, scoping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from search import JobSpec
from service.db import Job, JobStatus, Team
from service.db.models import ModelAlias, ScheduleRun
from service.db.repos import (
    claim_run,
    count_schedules,
    create_job,
    create_schedule,
    create_team,
    delete_schedule,
    find_last_succeeded_job,
    find_model_version,
    get_schedule,
    latest_schedule_runs,
    list_aliases,
    list_enabled_schedules,
    list_schedule_runs,
    record_run,
    set_alias,
    update_schedule,
)
from service.errors import ConflictError, NotFoundError
from tests.service.db.rows import add_dataset, add_model

DUE = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def acme(session: Session) -> Team:
    return create_team(session, name="acme")


def _fields(dataset_id: int, **over: object) -> dict[str, object]:
    fields = {
        "name": "nightly",
        "cron": "0 2 * * *",
        "timezone": "UTC",
        "model_name": "digits",
        "model_alias": None,
        "dataset_id": dataset_id,
        "config": JobSpec().to_json(),
        "enabled": True,
    }
    return fields | over


def test_schedules_are_unique_per_team_and_scoped(session: Session, acme: Team) -> None:
    model = add_model(session, acme)
    dataset = add_dataset(session, acme, model)
    row = create_schedule(session, team=acme, **_fields(dataset.id))
    with pytest.raises(ConflictError):
        create_schedule(session, team=acme, **_fields(dataset.id))
    other = create_team(session, name="other")
    theirs = create_schedule(session, team=other, **_fields(dataset.id))  # same name: fine
    with pytest.raises(NotFoundError):
        get_schedule(session, team=other, schedule_id=row.id)
    assert count_schedules(session, team=acme) == 1
    second = create_schedule(session, team=acme, **_fields(dataset.id, name="weekly"))
    with pytest.raises(ConflictError):
        update_schedule(session, schedule=second, changes={"name": "nightly"})
    update_schedule(session, schedule=theirs, changes={"enabled": False})
    assert [s.id for s in list_enabled_schedules(session)] == [row.id, second.id]


def test_runs_are_unique_and_deleting_a_schedule_keeps_its_jobs(
    session: Session, acme: Team
) -> None:
    model = add_model(session, acme)
    dataset = add_dataset(session, acme, model)
    row = create_schedule(session, team=acme, **_fields(dataset.id))
    run = claim_run(session, schedule_id=row.id, due_at=DUE)
    assert run is not None and claim_run(session, schedule_id=row.id, due_at=DUE) is None
    job = create_job(
        session, team=acme, model=model, dataset=dataset, spec=JobSpec(), schedule_id=row.id
    )
    record_run(session, run=run, job_id=job.id)
    assert find_last_succeeded_job(session, schedule_id=row.id) is None
    job.status = JobStatus.SUCCEEDED
    session.commit()
    assert find_last_succeeded_job(session, schedule_id=row.id) == job.id
    [(listed, status)] = list_schedule_runs(session, schedule=row)
    assert (listed.job_id, status) == (job.id, JobStatus.SUCCEEDED)
    delete_schedule(session, schedule=row)
    assert session.scalars(select(ScheduleRun)).all() == []
    kept = session.scalars(select(Job)).one()
    session.refresh(kept)
    assert kept.id == job.id and kept.schedule_id is None


@contextmanager
def _statements(session: Session) -> Iterator[list[str]]:
    """The SQL statements ``session``'s engine runs inside the block."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_latest_runs_of_many_schedules_come_in_two_queries(session: Session, acme: Team) -> None:
    """The dashboard shows each schedule's latest runs: per schedule, in due-time order,
    with their jobs -- two queries for all schedules, not one per schedule and run."""
    model = add_model(session, acme)
    dataset = add_dataset(session, acme, model)
    many, one, none = (
        create_schedule(session, team=acme, **_fields(dataset.id, name=name))
        for name in ("many", "one", "none")
    )
    jobs = {}
    for minutes in range(7):
        run = claim_run(session, schedule_id=many.id, due_at=DUE + timedelta(minutes=minutes))
        assert run is not None
        if minutes % 2:  # every other run submitted a job
            job = create_job(session, team=acme, model=model, dataset=dataset, spec=JobSpec())
            record_run(session, run=run, job_id=job.id)
            jobs[run.due_at] = job.id
    single = claim_run(session, schedule_id=one.id, due_at=DUE)
    assert single is not None
    record_run(session, run=single, error_code="model_not_found", error_message="gone")
    session.expunge_all()
    with _statements(session) as statements:
        latest = latest_schedule_runs(session, schedules=[many, one, none], per=5)
    assert len([s for s in statements if s.startswith("SELECT")]) == 2, statements
    assert set(latest) == {many.id, one.id, none.id}
    due = [run.due_at for run, _ in latest[many.id]]
    assert due == [DUE + timedelta(minutes=m) for m in (6, 5, 4, 3, 2)]
    for run, job in latest[many.id]:
        assert (job.id if job else None) == jobs.get(run.due_at) == run.job_id
    [(failed, no_job)] = latest[one.id]
    assert failed.error_code == "model_not_found" and no_job is None
    assert latest[none.id] == []
    assert latest_schedule_runs(session, schedules=[], per=5) == {}


def test_aliases_move_and_resolve(session: Session, acme: Team) -> None:
    v1, v2 = add_model(session, acme), add_model(session, acme)
    set_alias(session, team=acme, model=v1, alias="prod")
    set_alias(session, team=acme, model=v2, alias="prod")
    assert session.scalars(select(ModelAlias)).one().model_id == v2.id
    assert find_model_version(session, team=acme, name="digits", alias="prod") == v2
    assert find_model_version(session, team=acme, name="digits") == v2
    assert find_model_version(session, team=acme, name="digits", version=1) == v1
    assert find_model_version(session, team=acme, name="digits", alias="nope") is None
    assert list_aliases(session, model_ids=[v1.id, v2.id]) == {v1.id: [], v2.id: ["prod"]}
