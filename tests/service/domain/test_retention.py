"""Retention of scheduled jobs: keep the newest N, aliased versions and warm-start sources.

On both backends, with a real blob store and real Optuna studies (a SQLite storage file).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import optuna
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from search import JobSpec
from service.blobs import BlobStore
from service.db import Artifact, Job, JobStatus, Model, Team
from service.db.base import utcnow
from service.db.models import ModelAlias, Schedule, ScheduleRun
from service.db.repos import create_job, create_team
from service.domain.retention import Pruned, prune_schedule
from tests.service.db.rows import add_dataset, add_model

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Nights:
    """A schedule with jobs, each with a study and artifacts (some sharing one blob)."""

    def __init__(self, session: Session, tmp_path: Path) -> None:
        self.session = session
        self.store = BlobStore(tmp_path / "blobs")
        self.study_url = f"sqlite:///{tmp_path / 'studies.db'}"
        self.team: Team = create_team(session, name="acme")
        self.model = add_model(session, self.team)
        self.dataset = add_dataset(session, self.team, self.model)
        self.schedule = Schedule(
            team_id=self.team.id,
            name="nightly",
            cron="0 2 * * *",
            timezone="UTC",
            model_name=self.model.name,
            dataset_id=self.dataset.id,
            config={},
        )
        session.add(self.schedule)
        session.commit()
        self.t0 = utcnow() - timedelta(days=30)

    def job(
        self,
        day: int,
        *,
        status: JobStatus = JobStatus.SUCCEEDED,
        model: Model | None = None,
        shared: bytes = b"same model.mpq every night",
    ) -> Job:
        job = create_job(
            self.session,
            team=self.team,
            model=model or self.model,
            dataset=self.dataset,
            spec=JobSpec(trials=3),
        )
        job.schedule_id, job.status = self.schedule.id, status
        job.created_at = self.t0 + timedelta(days=day)
        job.study_name = f"job-{job.id}"
        optuna.create_study(study_name=job.study_name, storage=self.study_url)
        for name, data in (("model.mpq", shared), ("result.json", f"night {day}".encode())):
            temp = self.store.new_temp()
            temp.write_bytes(data)
            key, _, size, sha = self.store.commit_file(temp, kind="artifacts", ext="bin")
            then = time.time() - 7200  # written two hours ago
            os.utime(self.store.path(key), (then, then))
            self.session.add(
                Artifact(job_id=job.id, name=name, blob_path=key, size_bytes=size, sha256=sha)
            )
        self.session.add(
            ScheduleRun(schedule_id=self.schedule.id, due_at=job.created_at, job_id=job.id)
        )
        self.session.commit()
        return job

    def prune(self, keep: int) -> Pruned:
        return prune_schedule(
            self.session,
            store=self.store,
            study_url=self.study_url,
            schedule_id=self.schedule.id,
            keep=keep,
        )

    def job_ids(self) -> set[int]:
        return set(self.session.scalars(select(Job.id)))

    def studies(self) -> set[str]:
        return {s.study_name for s in optuna.get_all_study_summaries(self.study_url)}


@pytest.fixture
def nights(session: Session, tmp_path: Path) -> Nights:
    return Nights(session, tmp_path)


def test_the_newest_n_are_kept_and_older_jobs_go_with_studies_and_unshared_blobs(
    nights: Nights,
) -> None:
    jobs = [nights.job(day) for day in range(5)]
    results = {
        j.id: nights.session.scalar(
            select(Artifact.blob_path).where(
                Artifact.job_id == j.id, Artifact.name == "result.json"
            )
        )
        for j in jobs
    }
    shared = nights.session.scalar(select(Artifact.blob_path).where(Artifact.name == "model.mpq"))
    pruned = nights.prune(keep=2)
    assert sorted(pruned.jobs) == [j.id for j in jobs[:3]]
    assert nights.job_ids() == {jobs[3].id, jobs[4].id}
    assert nights.studies() == {f"job-{jobs[3].id}", f"job-{jobs[4].id}"}
    # each old night's own result.json is gone; the model.mpq all nights share is kept
    assert sorted(pruned.blobs) == sorted(results[j.id] for j in jobs[:3])
    assert all(not nights.store.path(results[j.id]).exists() for j in jobs[:3])
    assert all(nights.store.path(results[j.id]).exists() for j in jobs[3:])
    assert shared is not None and nights.store.path(shared).exists()
    # the schedule keeps the record of every due time, the job of the old ones unset
    runs = nights.session.scalars(select(ScheduleRun).order_by(ScheduleRun.due_at)).all()
    assert [r.job_id for r in runs] == [None, None, None, jobs[3].id, jobs[4].id]
    assert nights.prune(keep=2).jobs == ()  # idempotent


def test_aliased_versions_active_jobs_and_warm_start_sources_are_kept(nights: Nights) -> None:
    production = add_model(nights.session, nights.team)  # version 2 of the same name
    nights.session.add(
        ModelAlias(
            team_id=nights.team.id, name=production.name, alias="production", model_id=production.id
        )
    )
    nights.session.commit()
    aliased = nights.job(0, model=production)
    source = nights.job(1)
    running = nights.job(2, status=JobStatus.RUNNING)
    plain = nights.job(3)
    newest = nights.job(4, status=JobStatus.QUEUED)
    newest.warm_start_job_id = source.id
    nights.session.commit()
    pruned = nights.prune(keep=1)
    assert pruned.jobs == (plain.id,)
    assert nights.job_ids() == {aliased.id, source.id, running.id, newest.id}


def test_a_blob_still_used_by_another_row_or_just_reused_is_never_deleted(
    nights: Nights,
) -> None:
    old = nights.job(0, shared=b"one file")
    nights.job(1, shared=b"another file")
    key = nights.session.scalar(
        select(Artifact.blob_path).where(Artifact.job_id == old.id, Artifact.name == "model.mpq")
    )
    assert key is not None
    # a finalize elsewhere reuses the same bytes a moment before the prune (its row follows)
    temp = nights.store.new_temp()
    temp.write_bytes(b"one file")
    assert nights.store.commit_file(temp, kind="artifacts", ext="bin")[:2] == (key, False)
    pruned = nights.prune(keep=1)
    assert pruned.jobs == (old.id,) and key not in pruned.blobs
    assert nights.store.path(key).read_bytes() == b"one file"
    count = nights.session.scalar(select(func.count()).select_from(Artifact))
    assert count == 2  # the kept job's two artifacts


def test_keep_must_be_positive(nights: Nights) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        nights.prune(keep=0)
