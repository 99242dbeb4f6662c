"""Schedules and the registry in the domain, on SQLite and PostgreSQL, with an injected clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import InvalidPlanError
from search import JobSpec
from service.db import Job, JobStatus, Team
from service.db.models import Schedule, ScheduleRun
from service.db.repos import claim_run, create_team, list_schedule_runs
from service.domain import (
    create_schedule,
    delete_alias,
    fire_due,
    model_versions,
    resolve_model,
    set_alias,
    update_schedule,
)
from service.errors import ConflictError, InvalidAliasError, InvalidScheduleError, NotFoundError
from service.settings import Settings
from tests.service.db.rows import add_dataset, add_model
from tests.service.domain.test_domain import Queue

SPEC = JobSpec(metric="agreement", trials=3)


@pytest.fixture
def acme(session: Session) -> Team:
    return create_team(session, name="acme")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, max_trials=50, max_active_jobs_per_team=3)


def _schedule(session: Session, team: Team, settings: Settings, **over: Any) -> Schedule:
    model = add_model(session, team)
    args: dict[str, Any] = {
        "name": "nightly",
        "cron": "0 * * * *",
        "timezone": "UTC",
        "model_name": model.name,
        "model_alias": None,
        "dataset_id": add_dataset(session, team, model).id,
        "spec": SPEC,
        "settings": settings,
    }
    return create_schedule(session, team=team, **(args | over))


def test_versions_newest_first_with_their_aliases(session: Session, acme: Team) -> None:
    v1, v2 = add_model(session, acme), add_model(session, acme)
    set_alias(session, team=acme, name="digits", alias="production", version=1)
    set_alias(session, team=acme, name="digits", alias="candidate", version=2)
    set_alias(session, team=acme, name="digits", alias="canary", version=2)
    rows = model_versions(session, team=acme, name="digits")
    assert [(m.version, a) for m, a in rows] == [(2, ["canary", "candidate"]), (1, ["production"])]
    set_alias(session, team=acme, name="digits", alias="production", version=2)  # moved
    assert resolve_model(session, team=acme, name="digits", alias="production").id == v2.id
    assert resolve_model(session, team=acme, name="digits").id == v2.id  # latest
    assert resolve_model(session, team=acme, name="digits", alias="latest").id == v2.id
    delete_alias(session, team=acme, name="digits", alias="canary")
    assert model_versions(session, team=acme, name="digits")[1] == (v1, [])
    with pytest.raises(NotFoundError, match="no alias 'canary'"):
        delete_alias(session, team=acme, name="digits", alias="canary")
    with pytest.raises(NotFoundError, match="no model named 'resnet'"):
        model_versions(session, team=acme, name="resnet")
    for impossible in ("a\x00b", "", "x" * 256):  # no query sent (PostgreSQL refuses NUL)
        with pytest.raises(NotFoundError):
            resolve_model(session, team=acme, name=impossible)
    with pytest.raises(NotFoundError, match="no version 3"):
        set_alias(session, team=acme, name="digits", alias="x", version=3)
    other = create_team(session, name="other")
    with pytest.raises(NotFoundError):  # another team's model reads as missing
        resolve_model(session, team=other, name="digits")


@pytest.mark.parametrize("alias", ["latest", "Prod", "123", "", "a" * 65, "a b", "prod/1", "é"])
def test_bad_aliases_are_refused(session: Session, acme: Team, alias: str) -> None:
    add_model(session, acme)
    with pytest.raises(InvalidAliasError):
        set_alias(session, team=acme, name="digits", alias=alias, version=1)


def test_a_schedule_is_checked_like_a_job_before_it_is_stored(
    session: Session, acme: Team, settings: Settings
) -> None:
    with pytest.raises(InvalidScheduleError):
        _schedule(session, acme, settings, cron="0 25 * * *")
    with pytest.raises(InvalidScheduleError):
        _schedule(session, acme, settings, timezone="Nowhere/Town")
    with pytest.raises(NotFoundError, match="no model named"):
        _schedule(session, acme, settings, model_name="resnet")
    with pytest.raises(NotFoundError, match="no alias 'production'"):
        _schedule(session, acme, settings, model_alias="production")
    with pytest.raises(InvalidPlanError, match="at most 50"):
        _schedule(session, acme, settings, spec=JobSpec(metric="agreement", trials=51))
    other = create_team(session, name="other")
    theirs = add_dataset(session, other, add_model(session, other))
    with pytest.raises(NotFoundError, match="no dataset"):
        _schedule(session, acme, settings, dataset_id=theirs.id)
    assert session.scalars(select(Schedule)).all() == []
    row = _schedule(session, acme, settings)
    with pytest.raises(ConflictError, match="named 'nightly'"):
        _schedule(session, acme, settings)
    assert row.config == SPEC.to_json()


def test_beat_fires_the_latest_due_time_once_and_resolves_the_alias_then(
    session: Session, acme: Team, settings: Settings
) -> None:
    row = _schedule(session, acme, settings, model_alias=None)
    queue = Queue()
    t0 = row.updated_at
    assert fire_due(session, now=t0, settings=settings, queue=queue) == []  # not due yet
    later = t0 + timedelta(hours=5)  # beat was down 5 hours: the latest hour fires, once
    runs = fire_due(session, now=later, settings=settings, queue=queue)
    assert [r.due_at for r in runs] == [later.replace(minute=0, second=0, microsecond=0)]
    assert fire_due(session, now=later, settings=settings, queue=queue) == []
    job = session.get(Job, runs[0].job_id)
    assert job is not None and job.schedule_id == row.id and job.warm_start_job_id is None
    assert queue.sent == [("mpq.run_job", [job.id])]
    # A new version and a succeeded job: the next run takes both.
    v2 = add_model(session, acme)
    job.status = JobStatus.SUCCEEDED
    session.commit()
    runs = fire_due(session, now=later + timedelta(hours=1), settings=settings, queue=queue)
    second = session.get(Job, runs[0].job_id)
    assert second is not None and second.model_id == v2.id and second.warm_start_job_id == job.id


def test_a_run_that_cannot_submit_keeps_the_error_and_no_job(
    session: Session, acme: Team, settings: Settings
) -> None:
    add_model(session, acme)
    set_alias(session, team=acme, name="digits", alias="production", version=1)
    row = _schedule(session, acme, settings, model_alias="production")
    delete_alias(session, team=acme, name="digits", alias="production")
    runs = fire_due(
        session, now=row.updated_at + timedelta(hours=1), settings=settings, queue=Queue()
    )
    assert len(runs) == 1 and runs[0].job_id is None
    assert runs[0].error_code == "not_found" and "no alias 'production'" in str(
        runs[0].error_message
    )
    [(run, status)] = list_schedule_runs(session, schedule=row)
    assert run.error_code == "not_found" and status is None


def test_quota_and_disabled_schedules(session: Session, acme: Team, settings: Settings) -> None:
    row = _schedule(session, acme, settings, cron="* * * * *")
    queue, now = Queue(), row.updated_at
    for minute in range(1, 5):  # the quota is 3 active jobs
        fire_due(session, now=now + timedelta(minutes=minute), settings=settings, queue=queue)
    runs = session.scalars(select(ScheduleRun).order_by(ScheduleRun.due_at)).all()
    assert [r.error_code for r in runs] == [None, None, None, "quota_exceeded"]
    update_schedule(
        session, team=acme, schedule_id=row.id, changes={"enabled": False}, settings=settings
    )
    later = now + timedelta(minutes=10)
    assert fire_due(session, now=later, settings=settings, queue=queue) == []
    back = update_schedule(
        session, team=acme, schedule_id=row.id, changes={"enabled": True}, settings=settings
    )
    # re-enabled: a due time from before is not caught up (the window restarts)
    assert fire_due(session, now=back.updated_at, settings=settings, queue=queue) == []


def test_of_two_claims_of_one_due_time_one_wins(
    session: Session, acme: Team, settings: Settings
) -> None:
    row = _schedule(session, acme, settings)
    due = row.updated_at.replace(microsecond=0)
    assert claim_run(session, schedule_id=row.id, due_at=due) is not None
    assert claim_run(session, schedule_id=row.id, due_at=due) is None


def test_update_is_checked_and_another_team_cannot_see_it(
    session: Session, acme: Team, settings: Settings
) -> None:
    row = _schedule(session, acme, settings)
    other = create_team(session, name="other")
    with pytest.raises(NotFoundError):
        update_schedule(session, team=other, schedule_id=row.id, changes={}, settings=settings)
    with pytest.raises(InvalidScheduleError):
        update_schedule(
            session, team=acme, schedule_id=row.id, changes={"cron": "x"}, settings=settings
        )
    changed = update_schedule(
        session,
        team=acme,
        schedule_id=row.id,
        changes={"cron": "0  3 * * *", "timezone": "Europe/Paris", "spec": JobSpec(trials=5)},
        settings=settings,
    )
    assert (changed.cron, changed.timezone, changed.config["budget"]["trials"]) == (
        "0 3 * * *",
        "Europe/Paris",
        5,
    )
