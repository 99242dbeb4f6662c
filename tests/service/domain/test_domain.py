"""The domain layer driven with plain values (a path, a name, a JobSpec), as a scheduler would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine.errors import InvalidPlanError, MPQError
from search import JobSpec
from service.blobs import BlobStore, sha256_file
from service.db import Job, JobStatus, Team
from service.db.repos import (
    cancel_job,
    claim_job,
    create_team,
    find_job_by_id,
    list_artifacts,
    start_job,
)
from service.domain import add_dataset, add_model, complete_job, job_spec, submit_job
from service.errors import NotFoundError, QueueUnavailableError
from service.progress import progress_doc
from service.settings import Settings
from tests.conftest import Digits


class Queue:
    """A stand-in for the Celery app: records what was sent, or fails like a lost broker."""

    def __init__(self, *, down: bool = False) -> None:
        self.sent: list[tuple[str, list[Any]]] = []
        self.down = down

    def send_task(self, name: str, *, args: list[Any]) -> None:
        if self.down:
            raise ConnectionError("broker gone")
        self.sent.append((name, args))


def _files(store: BlobStore) -> set[str]:
    return {str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file()}


def _jobs(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Job)) or 0


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def acme(session: Session) -> Team:
    return create_team(session, name="acme")


def test_a_model_and_dataset_from_plain_paths_leave_the_callers_files_alone(
    session: Session, store: BlobStore, acme: Team, digits: Digits
) -> None:
    model = add_model(session, store=store, team=acme, name="digits", path=digits.pt2, trust=True)
    size, sha = sha256_file(digits.pt2)
    assert (model.version, model.sha256, model.size_bytes) == (1, sha, size)
    assert digits.pt2.is_file()  # copied into the store, not moved
    data = add_dataset(
        session, store=store, team=acme, name="d", model_id=model.id, path=digits.npz
    )
    assert data.model_id == model.id and data.num_samples > 0 and digits.npz.is_file()
    assert _files(store) == {model.blob_path, model.ir_blob_path, data.blob_path}


def test_a_refused_file_leaves_no_blob_no_row_and_no_temporary_file(
    session: Session, store: BlobStore, acme: Team, digits: Digits, tmp_path: Path
) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(MPQError) as info:
        add_model(session, store=store, team=acme, name="bad", path=bad, trust=True)
    assert info.value.code == "torch_save_pickle" and bad.is_file()
    model = add_model(session, store=store, team=acme, name="digits", path=digits.pt2, trust=True)
    other = create_team(session, name="other")
    with pytest.raises(NotFoundError):  # another team's model
        add_dataset(session, store=store, team=other, name="d", model_id=model.id, path=digits.npz)
    assert _files(store) == {model.blob_path, model.ir_blob_path}


def test_a_blank_name_is_refused_before_the_file_is_read(
    session: Session, store: BlobStore, acme: Team, tmp_path: Path
) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"\x80\x04K\x01.")  # a pickle: importing it first would say so
    with pytest.raises(MPQError) as info:
        add_model(session, store=store, team=acme, name="   ", path=bad, trust=True)
    assert info.value.code == "invalid_name"
    with pytest.raises(MPQError) as info:  # before the (missing) model is looked up
        add_dataset(session, store=store, team=acme, name=" ", model_id=999, path=bad)
    assert info.value.code == "invalid_name"
    assert _files(store) == set() and bad.is_file()


def test_submit_stores_the_spec_capped_and_enqueues_after_commit(
    session: Session, store: BlobStore, acme: Team, digits: Digits, tmp_path: Path
) -> None:
    model = add_model(session, store=store, team=acme, name="digits", path=digits.pt2, trust=True)
    data = add_dataset(
        session, store=store, team=acme, name="d", model_id=model.id, path=digits.npz
    )
    settings = Settings(data_dir=tmp_path, max_trials=50, max_parallelism=2)
    spec = JobSpec(trials=8, parallelism=9, rounding=("nearest",), sampler="random")
    queue = Queue()
    job = submit_job(
        session,
        team=acme,
        model_id=model.id,
        dataset_id=data.id,
        spec=spec,
        settings=settings,
        queue=queue,  # type: ignore[arg-type]
    )
    assert queue.sent == [("mpq.run_job", [job.id])]
    assert job.status == JobStatus.QUEUED and job.trials_total == 8
    assert job.config == {**spec.to_json(), "parallelism": 2}
    assert job_spec(job).parallelism == 2
    ids = {"model_id": model.id, "dataset_id": data.id, "settings": settings}
    with pytest.raises(InvalidPlanError):
        submit_job(session, team=acme, spec=JobSpec(trials=51), queue=queue, **ids)  # type: ignore[arg-type]
    assert _jobs(session) == 1
    with pytest.raises(QueueUnavailableError):
        submit_job(session, team=acme, spec=spec, queue=Queue(down=True), **ids)  # type: ignore[arg-type]
    failed = session.scalars(select(Job).order_by(Job.id.desc())).first()
    assert failed is not None and failed.status == JobStatus.FAILED
    assert failed.error_code == "queue_unavailable"


def test_complete_commits_artifacts_as_blobs_or_keeps_none_when_cancelled(
    session: Session, store: BlobStore, acme: Team, digits: Digits, tmp_path: Path
) -> None:
    model = add_model(session, store=store, team=acme, name="digits", path=digits.pt2, trust=True)
    data = add_dataset(
        session, store=store, team=acme, name="d", model_id=model.id, path=digits.npz
    )
    ids = {"model_id": model.id, "dataset_id": data.id}
    settings = Settings(data_dir=tmp_path)
    running, cancelled = (
        submit_job(
            session,
            team=acme,
            spec=JobSpec(),
            settings=settings,
            queue=Queue(),
            **ids,  # type: ignore[arg-type]
        )
        for _ in range(2)
    )
    before = _files(store)
    for job in (running, cancelled):
        out = store.new_temp_dir()
        (out / "result.json").write_text(f'{{"job": {job.id}}}')
        (out / "model.mpq").write_bytes(b"MPQ")
        assert claim_job(session, job_id=job.id, progress=progress_doc("preparing"))
        assert start_job(session, job_id=job.id, baseline={}, progress=progress_doc("searching"))
        if job is cancelled:  # by its user while it finalized
            cancel_job(session, job=job)
        done = complete_job(
            session,
            store=store,
            job_id=job.id,
            result={"chosen": None},
            trials_done=3,
            out_dir=out,
            names=("model.mpq", "result.json", "pareto.png"),
        )
        assert done == (job is running) and not out.exists()
    rows = list_artifacts(session, job=running)
    assert [a.name for a in rows] == ["model.mpq", "result.json"]
    assert {a.blob_path for a in rows} == _files(store) - before
    assert all(a.blob_path.startswith("artifacts/") for a in rows)
    assert rows[0].blob_path.endswith(".mpq") and rows[0].size_bytes == 3
    after = find_job_by_id(session, running.id)
    assert after is not None and after.status == JobStatus.SUCCEEDED
    assert list_artifacts(session, job=cancelled) == []


def test_a_dataset_over_max_bytes_is_refused_by_the_users_file_name(
    session: Session, store: BlobStore, acme: Team, digits: Digits
) -> None:
    """The declared size is checked against ``max_bytes`` before any array is read."""
    model = add_model(session, store=store, team=acme, name="digits", path=digits.pt2, trust=True)
    with pytest.raises(MPQError) as info:
        add_dataset(
            session,
            store=store,
            team=acme,
            name="d",
            model_id=model.id,
            path=digits.npz,
            filename="C:\\data\\my digits.npz",
            max_bytes=1000,
        )
    assert info.value.code == "data_too_large"
    assert "'my digits.npz'" in info.value.message and "1000 bytes" in info.value.message
    assert _files(store) == {model.blob_path, model.ir_blob_path}
