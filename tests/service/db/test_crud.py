"""Repository functions on SQLite and PostgreSQL: teams, API keys, model versions."""

from __future__ import annotations

import hashlib
from datetime import UTC

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from engine.errors import ConflictError, InvalidNameError, NotFoundError
from service.db import (
    ApiKey,
    Model,
    ModelKind,
    Team,
    create_api_key,
    create_model,
    create_team,
    find_team_by_key,
    find_team_by_name,
    get_team_by_name,
    revoke_api_key,
)


def _model(session: Session, team: Team, name: str) -> Model:
    return create_model(
        session, team=team, name=name, kind=ModelKind.PT2, sha256="0" * 64, size_bytes=10,
        blob_path=f"models/{name}", inventory={"layers": []},
    )  # fmt: skip


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
    assert [_model(session, acme, "resnet").version for _ in range(3)] == [1, 2, 3]
    assert _model(session, other, "resnet").version == 1
    assert _model(session, acme, "bert").version == 1
    assert _model(session, acme, "resnet").version == 4


def test_a_version_taken_concurrently_is_skipped(session: Session) -> None:
    acme = create_team(session, name="acme")
    _model(session, acme, "resnet")

    def upload_elsewhere(*_: object) -> None:
        # Another process commits version 2 after this session read "latest is 1".
        with Session(session.get_bind()) as other:
            other.add(
                Model(
                    team_id=acme.id, name="resnet", version=2, kind=ModelKind.ONNX,
                    sha256="1" * 64, size_bytes=1, blob_path="b", inventory={},
                )
            )  # fmt: skip
            other.commit()

    event.listen(session, "before_flush", upload_elsewhere, once=True)
    assert _model(session, acme, "resnet").version == 3
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
    for bad in ("", "x" * 256, "tab\there"):
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
