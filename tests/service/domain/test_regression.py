"""Regression alerts: a scheduled job against its schedule's last succeeded run (both backends)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from search import JobSpec, Targets
from service.blobs import BlobStore
from service.db import Job, JobStatus, Team
from service.db.base import utcnow
from service.db.models import Schedule
from service.db.repos import claim_job, create_job, create_team, find_job_by_id, start_job
from service.domain import complete_job
from service.domain.regression import RegressionTolerance, find_regression
from service.progress import progress_doc
from tests.service.db.rows import add_dataset, add_model

TOL = RegressionTolerance(bytes=0.02, metric=0.005)


def _result(nbytes: int, metric: float, *, held: float | None, met: bool = True) -> dict[str, Any]:
    heldout = None if held is None else {"metric": held, "ci": None, "samples": 10}
    chosen = {"file_bytes": nbytes, "metric": metric, "heldout": heldout}
    return {"chosen": chosen, "met_targets": met}


class Night:
    """A team, a model, a dataset and a schedule; jobs of it made to order."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.team: Team = create_team(session, name="acme")
        self.model = add_model(session, self.team)
        self.dataset = add_dataset(session, self.team, self.model)
        self.schedule = self._schedule("nightly")
        self.t0 = utcnow() - timedelta(days=10)

    def _schedule(self, name: str) -> Schedule:
        row = Schedule(
            team_id=self.team.id,
            name=name,
            cron="0 2 * * *",
            timezone="UTC",
            model_name=self.model.name,
            dataset_id=self.dataset.id,
            config={},
        )
        self.session.add(row)
        self.session.commit()
        return row

    def job(
        self,
        result: dict[str, Any] | None,
        *,
        day: int,
        spec: JobSpec | None = None,
        schedule: Schedule | None = None,
        status: JobStatus = JobStatus.SUCCEEDED,
    ) -> Job:
        job = create_job(
            self.session,
            team=self.team,
            model=self.model,
            dataset=self.dataset,
            spec=spec or JobSpec(targets=Targets(max_drop=0.01)),
        )
        job.schedule_id = (schedule or self.schedule).id
        job.status, job.result = status, result
        job.finished_at = None if result is None else self.t0 + timedelta(days=day)
        self.session.commit()
        return job


@pytest.fixture
def night(session: Session) -> Night:
    return Night(session)


def test_a_first_run_or_a_hand_submitted_job_is_not_compared(night: Night) -> None:
    first = night.job(None, day=0, status=JobStatus.RUNNING)
    now = _result(1000, 0.98, held=0.97)
    assert find_regression(night.session, job=first, result=now, tolerance=TOL) is None
    first.schedule_id = None
    assert find_regression(night.session, job=first, result=now, tolerance=TOL) is None


def test_bytes_up_past_the_tolerance_is_a_regression_and_within_it_is_not(night: Night) -> None:
    prev = night.job(_result(1000, 0.98, held=0.97), day=0)
    job = night.job(None, day=1, status=JobStatus.RUNNING)
    doc = find_regression(
        night.session, job=job, result=_result(1021, 0.98, held=0.97), tolerance=TOL
    )
    assert doc is not None and doc["compared_with"] == prev.id
    assert doc["regressed"] is True and doc["what"] == ["bytes"]
    assert doc["bytes"]["change"] == 21 and doc["bytes"]["relative"] == pytest.approx(0.021)
    assert doc["summary"] == "bytes up 2.1% (1,000 -> 1,021)"
    same = find_regression(
        night.session, job=job, result=_result(1020, 0.98, held=0.97), tolerance=TOL
    )
    assert same is not None and same["regressed"] is False and same["what"] == []
    assert same["summary"] == "no regression"


def test_the_metric_is_read_on_the_heldout_split_when_both_runs_have_one(night: Night) -> None:
    night.job(_result(1000, 0.98, held=0.97), day=0)
    job = night.job(None, day=1, status=JobStatus.RUNNING)
    # search split better, held-out split 0.006 worse: a regression on the held-out figure
    doc = find_regression(
        night.session, job=job, result=_result(900, 0.99, held=0.964), tolerance=TOL
    )
    assert doc is not None and doc["what"] == ["metric"]
    assert doc["metric"]["split"] == "heldout"
    assert doc["metric"]["change"] == pytest.approx(-0.006)
    # no held-out split this time: the search-split figures are compared
    doc = find_regression(
        night.session, job=job, result=_result(900, 0.974, held=None), tolerance=TOL
    )
    assert doc is not None and doc["metric"]["split"] == "search"
    assert doc["metric"]["regressed"] is True and doc["metric"]["previous"] == 0.98


def test_a_lower_is_better_metric_regresses_when_it_rises(night: Night) -> None:
    spec = JobSpec(metric="kl", targets=Targets(max_metric=0.05))
    night.job(_result(1000, 0.010, held=None), day=0, spec=spec)
    job = night.job(None, day=1, spec=spec, status=JobStatus.RUNNING)
    up = find_regression(
        night.session, job=job, result=_result(1000, 0.016, held=None), tolerance=TOL
    )
    down = find_regression(
        night.session, job=job, result=_result(1000, 0.001, held=None), tolerance=TOL
    )
    assert up is not None and up["what"] == ["metric"] and "kl up" in up["summary"]
    assert down is not None and down["regressed"] is False


def test_a_missed_target_after_a_met_one_is_a_regression(night: Night) -> None:
    night.job(_result(1000, 0.98, held=None), day=0)
    job = night.job(None, day=1, status=JobStatus.RUNNING)
    doc = find_regression(
        night.session, job=job, result=_result(1000, 0.98, held=None, met=False), tolerance=TOL
    )
    assert doc is not None and doc["what"] == ["met_targets"]
    empty = find_regression(night.session, job=job, result={"chosen": None}, tolerance=TOL)
    assert empty is not None and empty["what"] == ["met_targets"]
    assert empty["bytes"]["regressed"] is False and empty["bytes"]["current"] is None


def test_the_reference_is_the_newest_run_of_the_same_schedule_at_the_same_target(
    night: Night,
) -> None:
    night.job(_result(500, 0.98, held=None), day=0)
    newest = night.job(_result(1000, 0.98, held=None), day=2)
    night.job(_result(2000, 0.98, held=None), day=1)  # older, though made later
    night.job(_result(100, 0.98, held=None), day=3, spec=JobSpec(targets=Targets(max_drop=0.02)))
    night.job(_result(100, 0.98, held=None), day=4, schedule=night._schedule("other"))
    night.job(None, day=5, status=JobStatus.FAILED)
    job = night.job(None, day=6, status=JobStatus.RUNNING)
    doc = find_regression(
        night.session, job=job, result=_result(1000, 0.98, held=None), tolerance=TOL
    )
    assert doc is not None and doc["compared_with"] == newest.id and not doc["regressed"]


def test_complete_job_stores_the_regression_with_the_success(night: Night, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    night.job(_result(1000, 0.98, held=None), day=0)
    job = night.job(None, day=1, status=JobStatus.QUEUED)
    session = night.session
    assert claim_job(session, job_id=job.id, progress=progress_doc("preparing"))
    assert start_job(session, job_id=job.id, baseline={}, progress=progress_doc("searching"))
    out = store.new_temp_dir()
    (out / "result.json").write_text("{}")
    assert complete_job(
        session,
        store=store,
        job_id=job.id,
        result=_result(1100, 0.98, held=None),
        trials_done=3,
        out_dir=out,
        names=("result.json",),
        tolerance=TOL,
    )
    session.expire_all()
    row = find_job_by_id(session, job.id)
    assert row is not None and row.status == JobStatus.SUCCEEDED
    assert row.regression is not None and row.regression["what"] == ["bytes"]
