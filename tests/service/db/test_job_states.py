"""The job state machine: every move from every state, allowed or refused, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from search import JobSpec
from service.db import Job, JobStatus, ModelKind, Team, liveness
from service.db.repos import (
    ACTIVE,
    FINAL,
    TRANSITIONS,
    cancel_job,
    claim_job,
    create_dataset,
    create_job,
    create_model,
    create_team,
    fail_job,
    find_job_by_id,
    finish_job,
    record_progress,
    record_step,
    start_job,
)
from service.db.repos.job_states import allowed
from service.errors import ConflictError
from service.progress import progress_doc

LOADING = progress_doc("preparing", step="loading", done=0, total=1)
SENSITIVITY = progress_doc("preparing", step="sensitivity", done=3, total=8)
SEARCHING = progress_doc("searching", done=0, total=3)
TWO = progress_doc("searching", done=2, total=3, eta_s=1.5)

STALE = datetime(2026, 1, 1, tzinfo=UTC)
"""The heartbeat of jobs put in a state by hand: old, so the recovery sweep may claim them."""

# Each move through its repository function; returns whether the move was made.
MOVES: dict[str, Callable[[Session, Job], bool]] = {
    "claim": lambda s, j: claim_job(s, job_id=j.id, progress=LOADING),
    "step": lambda s, j: (
        record_step(s, job_id=j.id, progress=SENSITIVITY) == JobStatus.PREPARING
        and s.get(Job, j.id, populate_existing=True).progress == SENSITIVITY  # type: ignore[union-attr]
    ),
    "requeue": lambda s, j: _requeue(s, j),
    "start": lambda s, j: start_job(
        s, job_id=j.id, baseline={"metric": 0.9, "bytes": 10}, progress=SEARCHING
    ),
    "progress": lambda s, j: (
        record_progress(s, job_id=j.id, trials_done=2, best={"n": 1}, progress=TWO)
        == JobStatus.RUNNING
    ),
    "finish": lambda s, j: finish_job(
        s,
        job_id=j.id,
        result={"ok": 1},
        trials_done=3,
        artifacts=[],
        regression={"regressed": False},
    ),
    "fail": lambda s, j: fail_job(s, job_id=j.id, code="invalid_plan", message="no"),
    "cancel": lambda s, j: _cancel(s, j),
}

# What each move sets, beside the state (heartbeats: checked apart, they are times).
SETS: dict[str, dict[str, Any]] = {
    "claim": {"progress": LOADING, "heartbeat_at": ...},
    "step": {"progress": SENSITIVITY},
    "requeue": {"progress": None, "heartbeat_at": ...},
    "start": {"baseline": {"metric": 0.9, "bytes": 10}, "progress": SEARCHING},
    "progress": {"trials_done": 2, "best": {"n": 1}, "progress": TWO},
    "finish": {"result": {"ok": 1}, "trials_done": 3, "regression": {"regressed": False}},
    "fail": {"error_code": "invalid_plan", "error_message": "no"},
    "cancel": {},
}


def _requeue(session: Session, job: Job) -> bool:
    # The recovery sweep's claim of a stale job: it requeues a preparing one.
    seen = job.heartbeat_at
    assert seen is not None
    before = job.status
    assert liveness.claim_stale(session, job_id=job.id, seen=seen) == (before in ACTIVE)
    return before == JobStatus.PREPARING


def _cancel(session: Session, job: Job) -> bool:
    before = job.status
    try:
        cancel_job(session, job=job)
    except ConflictError:
        assert before in (JobStatus.SUCCEEDED, JobStatus.FAILED)
        return False
    return before != JobStatus.CANCELLED  # cancelling a cancelled job is a no-op, not an error


def _job_in(session: Session, team: Team, status: JobStatus) -> Job:
    model = create_model(
        session,
        team=team,
        name="m",
        kind=ModelKind.PT2,
        sha256="0" * 64,
        size_bytes=1,
        blob_path="models/m",
        inventory={},
    )
    dataset = create_dataset(
        session,
        team=team,
        name="d",
        sha256="1" * 64,
        size_bytes=1,
        blob_path="datasets/d",
        num_samples=1,
        inputs={},
    )
    job = create_job(session, team=team, model=model, dataset=dataset, spec=JobSpec(trials=3))
    stale = datetime(2026, 1, 1, tzinfo=UTC)  # a heartbeat, so the recovery sweep may claim it
    session.execute(update(Job).where(Job.id == job.id).values(status=status, heartbeat_at=stale))
    session.commit()
    session.refresh(job)
    return job


def test_the_table_moves_active_jobs_and_leaves_final_ones_alone() -> None:
    assert set(TRANSITIONS) == set(MOVES) == set(SETS)
    assert set(ACTIVE) | set(FINAL) == set(JobStatus)
    for move, t in TRANSITIONS.items():
        assert not set(t.sources) & set(FINAL), move  # nothing leaves a final state
        assert t.sets == frozenset(SETS[move]), move
    assert [m for m in TRANSITIONS if allowed(m, JobStatus.QUEUED)] == ["claim", "fail", "cancel"]
    assert [m for m in TRANSITIONS if allowed(m, JobStatus.PREPARING)] == [
        "step",
        "requeue",
        "start",
        "fail",
        "cancel",
    ]
    assert [m for m in TRANSITIONS if allowed(m, JobStatus.RUNNING)] == [
        "progress",
        "finish",
        "fail",
        "cancel",
    ]


def test_every_move_from_every_state_does_what_the_table_says(session: Session) -> None:
    team = create_team(session, name="acme")
    for status in JobStatus:
        for move, t in TRANSITIONS.items():
            job = _job_in(session, team, status)
            made = MOVES[move](session, job)
            after = find_job_by_id(session, job.id)
            assert after is not None
            where = f"{move} from {status.value}"
            assert made == allowed(move, status), where
            if not made:
                assert after.status == status, where
                continue
            assert after.status == t.target, where
            for column, value in SETS[move].items():
                if value is ...:  # a heartbeat written now
                    assert after.heartbeat_at > STALE, f"{where}: {column}"  # type: ignore[operator]
                else:
                    assert getattr(after, column) == value, f"{where}: {column}"
            # jobs put in a state by hand have no times; a move sets only its own
            assert (after.started_at is not None) == t.starts, where
            assert (after.finished_at is not None) == t.ends, where


def test_one_claim_wins_and_progress_never_goes_back(session: Session) -> None:
    team = create_team(session, name="acme")
    job = _job_in(session, team, JobStatus.QUEUED)
    assert claim_job(session, job_id=job.id, progress=LOADING)
    assert not claim_job(session, job_id=job.id, progress=LOADING)  # a duplicate delivery
    assert start_job(session, job_id=job.id, baseline={}, progress=SEARCHING)
    assert find_job_by_id(session, job.id).started_at is not None  # type: ignore[union-attr]
    assert not start_job(session, job_id=job.id, baseline={"again": 1}, progress=SEARCHING)
    five = progress_doc("searching", done=5, total=8)
    assert (
        record_progress(session, job_id=job.id, trials_done=5, best=None, progress=five)
        == JobStatus.RUNNING
    )
    assert record_progress(session, job_id=job.id, trials_done=3, best={"old": 1}, progress=TWO)
    after = find_job_by_id(session, job.id)
    assert after is not None and after.trials_done == 5 and after.best is None
    assert after.progress == five
    # Once the finalize is claimed the phase stays finalizing; a late runner changes nothing.
    assert liveness.claim_finalize(session, job_id=job.id)
    assert record_progress(session, job_id=job.id, trials_done=5, best={"late": 1}, progress=five)
    after = find_job_by_id(session, job.id)
    assert after is not None and after.best is None and after.progress is not None
    assert after.progress["phase"] == "finalizing" and after.progress["eta_s"] is None
    assert record_progress(session, job_id=10_000, trials_done=1, best=None, progress=TWO) is None


def test_a_stale_preparing_job_is_requeued_once_and_claimed_anew(session: Session) -> None:
    team = create_team(session, name="acme")
    job = _job_in(session, team, JobStatus.PREPARING)
    seen = job.heartbeat_at
    assert seen is not None
    assert liveness.stale_jobs(session, grace_s=60) == [job]
    assert liveness.claim_stale(session, job_id=job.id, seen=seen)
    assert not liveness.claim_stale(session, job_id=job.id, seen=seen)  # another sweeper
    after = find_job_by_id(session, job.id)
    assert after is not None and after.status == JobStatus.QUEUED and after.progress is None
    assert liveness.stale_jobs(session, grace_s=60) == []  # its heartbeat moved to now
    assert claim_job(session, job_id=job.id, progress=LOADING)  # the prepare sent again
    assert record_step(session, job_id=job.id, progress=SENSITIVITY) == JobStatus.PREPARING


@pytest.mark.parametrize("status", list(FINAL))
def test_cancel_answers_conflict_only_for_succeeded_and_failed(
    session: Session, status: JobStatus
) -> None:
    job = _job_in(session, create_team(session, name="acme"), status)
    if status == JobStatus.CANCELLED:
        assert cancel_job(session, job=job).status == JobStatus.CANCELLED
        return
    with pytest.raises(ConflictError) as info:
        cancel_job(session, job=job)
    assert info.value.message == f"job {job.id} has already {status.value}; it cannot be cancelled"
