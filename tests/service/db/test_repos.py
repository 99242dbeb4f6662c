"""Repositories on SQLite and PostgreSQL: teams, API keys, model versions, the shared reads."""

from __future__ import annotations

import hashlib
from datetime import UTC

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from search import JobSpec
from service.db import ApiKey, Dataset, Job, JobStatus, Model, ModelKind, Team
from service.db.repos import (
    blob_in_use,
    claim_job,
    count_datasets,
    count_jobs,
    count_models,
    create_api_key,
    create_job,
    create_team,
    find_artifact,
    find_dataset,
    find_job,
    find_model,
    find_team_by_key,
    find_team_by_name,
    finish_job,
    get_artifact,
    get_dataset,
    get_job,
    get_model,
    get_team_by_name,
    list_artifacts,
    list_datasets,
    list_jobs,
    list_models,
    revoke_api_key,
    start_job,
    study_name,
)
from service.errors import ConflictError, InvalidNameError, NotFoundError
from service.progress import progress_doc
from tests.service.db.rows import add_dataset, add_model


def test_teams_are_found_by_name_and_a_miss_raises_not_found(session: Session) -> None:
    acme = create_team(session, name="acme")
    assert get_team_by_name(session, "acme").id == acme.id
    assert find_team_by_name(session, "nobody") is None
    with pytest.raises(NotFoundError) as info:
        get_team_by_name(session, "nobody")
    assert info.value.code == "not_found"
    assert "'nobody'" in info.value.message


def test_a_duplicate_or_malformed_team_name_is_refused(session: Session) -> None:
    create_team(session, name="acme")
    with pytest.raises(ConflictError) as conflict:
        create_team(session, name="acme")
    assert conflict.value.code == "conflict"
    for bad in ("", "with space", "-dash", "x" * 65):
        with pytest.raises(InvalidNameError):
            create_team(session, name=bad)
    assert session.scalars(select(Team.name)).all() == ["acme"]


def test_model_versions_count_up_per_team_and_name(session: Session) -> None:
    acme, other = create_team(session, name="acme"), create_team(session, name="other")
    assert [add_model(session, acme, "resnet").version for _ in range(3)] == [1, 2, 3]
    assert add_model(session, other, "resnet").version == 1
    assert add_model(session, acme, "bert").version == 1
    assert add_model(session, acme, "resnet").version == 4


def test_a_version_taken_concurrently_is_skipped(session: Session) -> None:
    acme = create_team(session, name="acme")
    add_model(session, acme, "resnet")

    def upload_elsewhere(*_: object) -> None:
        # Another process commits version 2 after this session read "latest is 1".
        with Session(session.get_bind()) as other:
            other.add(
                Model(
                    team_id=acme.id,
                    name="resnet",
                    version=2,
                    kind=ModelKind.ONNX,
                    sha256="1" * 64,
                    size_bytes=1,
                    blob_path="b",
                    inventory={},
                )
            )
            other.commit()

    event.listen(session, "before_flush", upload_elsewhere, once=True)
    assert add_model(session, acme, "resnet").version == 3
    kinds = session.scalars(select(Model.kind).order_by(Model.version)).all()
    assert kinds == [ModelKind.PT2, ModelKind.ONNX, ModelKind.PT2]


def test_timestamps_read_back_timezone_aware_in_utc(session: Session) -> None:
    team_id = create_team(session, name="acme").id
    session.expunge_all()
    team = session.get(Team, team_id)
    assert team is not None
    assert team.created_at.tzinfo is not None
    assert team.created_at.utcoffset() == UTC.utcoffset(None)


def test_the_secret_is_not_stored_only_its_hash(session: Session) -> None:
    acme = create_team(session, name="acme")
    key, secret = create_api_key(session, team=acme, name="ci")
    assert secret.startswith("mpq_") and len(secret) >= 40
    assert key.hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.startswith(key.prefix) and len(key.prefix) < len(secret) // 2
    rows = session.execute(text("SELECT * FROM api_keys")).all()
    assert rows and not any(secret in str(v) for row in rows for v in row)


def test_a_key_finds_its_team_and_nothing_else_does(session: Session) -> None:
    acme, other = create_team(session, name="acme"), create_team(session, name="other")
    _, secret = create_api_key(session, team=acme, name="ci")
    _, other_secret = create_api_key(session, team=other, name="ci")
    found = find_team_by_key(session, secret)
    assert found is not None and found.id == acme.id
    other_found = find_team_by_key(session, other_secret)
    assert other_found is not None and other_found.id == other.id
    wrong_tail = secret[:-1] + ("A" if secret[-1] != "A" else "B")  # same prefix, other hash
    for wrong in (wrong_tail, secret + "x", secret[:12], "", "Bearer " + secret, "mpq_"):
        assert find_team_by_key(session, wrong) is None


def test_a_revoked_key_finds_nothing(session: Session) -> None:
    acme = create_team(session, name="acme")
    key, secret = create_api_key(session, team=acme, name="ci")
    _, kept = create_api_key(session, team=acme, name="kept")
    revoked = revoke_api_key(session, key=key)
    assert revoked.revoked_at is not None
    assert find_team_by_key(session, secret) is None
    assert find_team_by_key(session, kept) is not None
    first = revoked.revoked_at
    assert revoke_api_key(session, key=key).revoked_at == first


def test_a_key_label_must_be_printable(session: Session) -> None:
    acme = create_team(session, name="acme")
    for bad in ("", "x" * 256, "tab\there", "   ", "\u3000"):
        with pytest.raises(InvalidNameError):
            create_api_key(session, team=acme, name=bad)
    assert session.scalars(select(ApiKey)).all() == []


def test_the_database_enforces_foreign_keys_and_job_states(session: Session) -> None:
    session.add(ApiKey(team_id=999, name="x", prefix="mpq_x", hash="f" * 64))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    acme = create_team(session, name="acme")
    with pytest.raises(IntegrityError):
        session.execute(
            text(
                "INSERT INTO models (team_id, name, version, kind, sha256, size_bytes,"
                " blob_path, inventory, created_at) VALUES (:t, 'm', 1, 'keras', 'x', 1, 'p',"
                " '{}', '2026-01-01 00:00:00+00:00')"
            ),
            {"t": acme.id},
        )


def _job(session: Session, team: Team, model: Model, dataset: Dataset) -> Job:
    return create_job(session, team=team, model=model, dataset=dataset, spec=JobSpec(trials=3))


def test_every_team_scoped_resource_reads_the_same_way(session: Session) -> None:
    """get raises, find returns None, list pages newest first, count counts: per team."""
    acme, other = create_team(session, name="acme"), create_team(session, name="other")
    theirs = add_model(session, other, "theirs")
    made: dict[str, list[int]] = {"model": [], "dataset": [], "job": []}
    for i in range(3):
        model = add_model(session, acme, f"m{i}")
        dataset = add_dataset(session, acme, model, f"d{i}")
        made["model"].append(model.id)
        made["dataset"].append(dataset.id)
        made["job"].append(_job(session, acme, model, dataset).id)
    their_data = add_dataset(session, other, theirs, "theirs")
    foreign = {
        "model": theirs.id,
        "dataset": their_data.id,
        "job": _job(session, other, theirs, their_data).id,
    }
    reads = {
        "model": (get_model, find_model, list_models, count_models),
        "dataset": (get_dataset, find_dataset, list_datasets, count_datasets),
        "job": (get_job, find_job, list_jobs, count_jobs),
    }
    for noun, (get, find, list_, count) in reads.items():
        ids = made[noun]
        key = f"{noun}_id"
        assert get(session, team=acme, **{key: ids[0]}).id == ids[0]
        assert find(session, team=acme, **{key: ids[1]}).id == ids[1]
        # another team's row reads exactly like a missing one
        for missing in (foreign[noun], 10_000):
            assert find(session, team=acme, **{key: missing}) is None
            with pytest.raises(NotFoundError) as info:
                get(session, team=acme, **{key: missing})
            assert info.value.message.startswith(f"no {noun} with id {missing}; "), noun
        assert [r.id for r in list_(session, team=acme)] == ids[::-1]  # newest first
        assert [r.id for r in list_(session, team=acme, skip=1, limit=1)] == [ids[1]]
        assert list_(session, team=acme, skip=5) == []
        assert count(session, team=acme) == 3
        assert count(session, team=other) == 1
    assert count_jobs(session, team=acme, status=JobStatus.QUEUED) == 3
    assert count_jobs(session, team=acme, status=JobStatus.RUNNING) == 0
    assert list_jobs(session, team=acme, status=JobStatus.RUNNING) == []


def test_a_job_stores_its_spec_as_is_and_names_its_study(session: Session) -> None:
    acme = create_team(session, name="acme")
    model = add_model(session, acme, "m")
    spec = JobSpec(trials=7, sampler="random", pins=(("fc*", "int8"),), parallelism=2)
    dataset = add_dataset(session, acme, model, "d")
    job = create_job(session, team=acme, model=model, dataset=dataset, spec=spec)
    assert job.config == spec.to_json() and job.trials_total == 7
    assert job.study_name == study_name(job.id) == f"job-{job.id}"
    assert JobSpec.from_stored(job.config) == spec


def test_artifacts_are_read_per_job_by_name(session: Session) -> None:
    acme = create_team(session, name="acme")
    model = add_model(session, acme, "m")
    dataset = add_dataset(session, acme, model, "d")
    job, other = _job(session, acme, model, dataset), _job(session, acme, model, dataset)
    assert claim_job(session, job_id=job.id, progress=progress_doc("preparing"))
    assert start_job(session, job_id=job.id, baseline={}, progress=progress_doc("searching"))
    files = [
        ("result.json", "artifacts/a.json", 2, "a" * 64),
        ("model.mpq", "artifacts/b.mpq", 3, "b" * 64),
    ]
    assert finish_job(session, job_id=job.id, result={}, trials_done=0, artifacts=files)
    assert [a.name for a in list_artifacts(session, job=job)] == ["model.mpq", "result.json"]
    assert get_artifact(session, job=job, name="model.mpq").blob_path == "artifacts/b.mpq"
    assert find_artifact(session, job=other, name="model.mpq") is None
    with pytest.raises(NotFoundError) as info:
        get_artifact(session, job=other, name="model.mpq")
    assert f"GET /v1/jobs/{other.id}/artifacts" in info.value.message
    assert list_artifacts(session, job=other) == []
    assert blob_in_use(session, "artifacts/b.mpq") and blob_in_use(session, "models/m")
    assert not blob_in_use(session, "artifacts/c.png")
