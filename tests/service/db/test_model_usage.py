"""The model pages' reads on SQLite and PostgreSQL: a model's jobs, data and sensitivity."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from service.db import Job
from service.db.repos import (
    claim_job,
    count_jobs_by_model,
    create_api_key,
    create_team,
    fail_job,
    find_latest_sensitivity,
    finish_job,
    list_api_keys,
    list_model_datasets,
    list_model_jobs,
    mark_key_used,
    start_job,
)
from service.progress import progress_doc
from tests.service.db.rows import add_job, add_model


def _finish(session: Session, job: Job, result: dict[str, Any]) -> None:
    assert claim_job(session, job_id=job.id, progress=progress_doc("preparing"))
    assert start_job(session, job_id=job.id, baseline={"metric": 1.0, "bytes": 8}, progress=None)
    assert finish_job(session, job_id=job.id, result=result, trials_done=3, artifacts=[])


def test_a_models_jobs_and_datasets(session: Session) -> None:
    acme, other = create_team(session, name="acme"), create_team(session, name="other")
    digits, mini = add_model(session, acme), add_model(session, acme, "mini")
    jobs = [
        add_job(session, acme, digits),
        add_job(session, acme, digits),
        add_job(session, acme, mini),
    ]
    add_job(session, other, add_model(session, other))
    _finish(session, jobs[0], {"met_targets": False, "trials": [{"x": 1}] * 500})
    session.expunge_all()

    assert count_jobs_by_model(session, team=acme) == {digits.id: 2, mini.id: 1}
    rows = list_model_jobs(session, team=acme, model=digits)
    assert [s.job.id for s in rows] == [jobs[1].id, jobs[0].id]  # newest first
    assert all("result" in inspect(s.job).unloaded for s in rows)
    assert rows[1].met_targets is False and rows[0].met_targets is None
    assert (rows[0].model_name, rows[0].model_version) == ("digits", 1)
    assert list_model_jobs(session, team=other, model=digits) == []  # not its model
    datasets = list_model_datasets(session, team=acme, model=digits)
    assert len(datasets) == 2 and {d.model_id for d in datasets} == {digits.id}


def test_the_latest_succeeded_jobs_sensitivity_in_one_query(session: Session) -> None:
    acme, other = create_team(session, name="acme"), create_team(session, name="other")
    digits = add_model(session, acme)
    assert find_latest_sensitivity(session, team=acme, model=digits) is None
    older, newer, failed, without = (add_job(session, acme, digits) for _ in range(4))
    _finish(
        session,
        older,
        {"sensitivity": {"conv": {"int4/gptq/a8": 0.5}}, "sensitivity_method": "local"},
    )
    table = {"conv": {"int2/gptq/a8": 0.25, "int8/nearest/a8": 1e-7, "bad": "x"}, "fc": {}}
    trials = [{"plan": {"conv": "int4"}}] * 1000
    _finish(session, newer, {"sensitivity": table, "sensitivity_method": "full", "trials": trials})
    fail_job(session, job_id=failed.id, code="oops", message="failed")
    _finish(session, without, {"met_targets": True})  # latest, but measured nothing
    session.expunge_all()

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(session.get_bind(), "before_cursor_execute", record)
    found = find_latest_sensitivity(session, team=acme, model=digits)
    event.remove(session.get_bind(), "before_cursor_execute", record)
    assert len(statements) == 1
    assert found is not None
    assert (found.job_id, found.method) == (newer.id, "full")
    assert found.table == {"conv": {"int2/gptq/a8": 0.25, "int8/nearest/a8": 1e-7}, "fc": {}}
    assert find_latest_sensitivity(session, team=other, model=digits) is None


def test_the_key_list_shows_use_written_during_the_request(session: Session) -> None:
    acme = create_team(session, name="acme")
    key, _ = create_api_key(session, team=acme, name="alice")
    assert key.last_used_at is None
    mark_key_used(session, key=key)  # a bulk UPDATE: the loaded row is not told
    listed = {k.id: k for k in list_api_keys(session, team=acme)}
    assert listed[key.id].last_used_at is not None
