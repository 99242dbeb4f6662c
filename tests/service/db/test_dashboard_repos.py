"""The dashboard's reads and writes on SQLite and PostgreSQL: job summaries, sign-ins, key use."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import event, inspect, update
from sqlalchemy.orm import Session

from service.db import Job, JobStatus
from service.db.base import utcnow
from service.db.models import ApiKey, WebSession
from service.db.repos import (
    JobFilter,
    claim_job,
    close_web_session,
    count_job_summaries,
    create_api_key,
    create_team,
    find_web_session,
    finish_job,
    list_job_summaries,
    list_model_names,
    mark_key_used,
    open_web_session,
    revoke_api_key,
    start_job,
)
from service.progress import progress_doc
from tests.service.db.rows import add_job, add_model


def test_job_summaries_filter_page_and_never_read_the_result_document(session: Session) -> None:
    acme, other = create_team(session, name="acme"), create_team(session, name="other")
    alice, _ = create_api_key(session, team=acme, name="alice")
    bob, _ = create_api_key(session, team=acme, name="bob")
    digits, digits2, mini = (
        add_model(session, acme, "digits"),
        add_model(session, acme, "digits"),
        add_model(session, acme, "minilm"),
    )
    jobs = [
        add_job(session, acme, digits, created_by=alice),
        add_job(session, acme, digits2, created_by=bob),
        add_job(session, acme, mini, created_by=alice),
    ]
    add_job(session, other, add_model(session, other, "digits"))
    done = jobs[0]
    assert claim_job(session, job_id=done.id, progress=progress_doc("preparing"))
    assert start_job(
        session, job_id=done.id, baseline={"metric": 0.99, "bytes": 8000}, progress=None
    )
    big = {"met_targets": True, "trials": [{"plan": {"x": "int4"}}] * 1000}
    assert finish_job(session, job_id=done.id, result=big, trials_done=3, artifacts=[])
    session.execute(update(Job).where(Job.id == done.id).values(best={"bytes": 1000}))
    session.commit()
    session.expunge_all()

    statements: list[str] = []
    event.listen(session.get_bind(), "before_cursor_execute", _record(statements))
    rows = list_job_summaries(session, team=acme, where=JobFilter())
    assert [s.job.id for s in rows] == [j.id for j in reversed(jobs)]  # newest first
    assert len(statements) == 1  # one query: models and keys joined, not read per row
    # The result column itself is not loaded (its met_targets flag is extracted in SQL).
    assert all("result" in inspect(s.job).unloaded for s in rows)
    first = rows[-1]
    assert (first.model_name, first.model_version) == ("digits", 1)
    assert first.met_targets is True and first.ratio == 8.0
    assert first.job.created_by is not None and first.job.created_by.name == "alice"
    assert rows[0].met_targets is None and rows[0].ratio is None

    by_model = list_job_summaries(session, team=acme, where=JobFilter(model="digits"))
    assert [s.job.id for s in by_model] == [jobs[1].id, jobs[0].id]  # every version
    by_key = JobFilter(key_id=alice.id)
    assert [s.job.id for s in list_job_summaries(session, team=acme, where=by_key)] == [
        jobs[2].id,
        jobs[0].id,
    ]
    succeeded = JobFilter(status=JobStatus.SUCCEEDED)
    assert count_job_summaries(session, team=acme, where=succeeded) == 1
    assert count_job_summaries(session, team=acme, where=JobFilter(model="digits")) == 2
    assert count_job_summaries(session, team=other, where=JobFilter()) == 1
    page = list_job_summaries(session, team=acme, where=JobFilter(), skip=1, limit=1)
    assert [s.job.id for s in page] == [jobs[1].id]
    assert list_model_names(session, team=acme) == ["digits", "minilm"]


def _record(into: list[str]) -> Callable[..., None]:
    """A ``before_cursor_execute`` listener appending each SELECT statement to ``into``."""

    def listener(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            into.append(statement)

    return listener


def test_a_web_session_acts_as_its_key_until_it_ends(session: Session) -> None:
    acme = create_team(session, name="acme")
    key, _ = create_api_key(session, team=acme, name="alice")
    web, token = open_web_session(session, key=key, ttl_s=3600)
    found = find_web_session(session, token)
    assert found is not None and found[1].id == key.id and found[2].id == acme.id
    assert web.hash != token and len(web.csrf) >= 40  # only the hash is stored
    assert find_web_session(session, token + "x") is None
    assert find_web_session(session, "") is None

    # expired
    session.execute(
        update(WebSession)
        .where(WebSession.id == web.id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    session.commit()
    assert find_web_session(session, token) is None

    # signed out
    _, second = open_web_session(session, key=key, ttl_s=3600)
    assert find_web_session(session, second) is not None
    close_web_session(session, token=second)
    assert find_web_session(session, second) is None

    # key revoked
    _, third = open_web_session(session, key=key, ttl_s=3600)
    revoke_api_key(session, key=key)
    assert find_web_session(session, third) is None


def test_key_use_is_written_at_most_once_a_minute(session: Session) -> None:
    acme = create_team(session, name="acme")
    key, _ = create_api_key(session, team=acme, name="alice")
    assert key.last_used_at is None
    mark_key_used(session, key=key)
    session.refresh(key)
    first = key.last_used_at
    assert first is not None and abs((utcnow() - first).total_seconds()) < 60
    mark_key_used(session, key=key)
    session.refresh(key)
    assert key.last_used_at == first  # within the minute: unchanged
    earlier = first - timedelta(minutes=5)
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=earlier))
    session.commit()
    session.refresh(key)
    mark_key_used(session, key=key)
    session.refresh(key)
    assert key.last_used_at is not None and key.last_used_at > earlier
