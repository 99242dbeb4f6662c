"""Repository functions: the only code that writes rows. Each owns its transaction.

Names say what a miss does: ``get_x`` raises :class:`~engine.errors.NotFoundError`,
``find_x`` returns ``None``, ``list_x`` returns a list. Functions that create or change
rows commit before returning, so callers enqueue work only for committed rows.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from engine.errors import ConflictError, InvalidNameError, NotFoundError
from service.db.base import utcnow
from service.db.models import ApiKey, Artifact, Dataset, Job, JobStatus, Model, ModelKind, Team
from service.db.session import end_reads

__all__ = [
    "ACTIVE",
    "KEY_PREFIX",
    "cancel_job",
    "count_datasets",
    "count_jobs",
    "count_models",
    "create_api_key",
    "create_dataset",
    "create_job",
    "create_model",
    "create_team",
    "fail_job",
    "find_artifact",
    "find_dataset",
    "find_job",
    "find_job_by_id",
    "find_key",
    "find_model",
    "find_team_by_key",
    "find_team_by_name",
    "finish_job",
    "get_artifact",
    "get_dataset",
    "get_job",
    "get_model",
    "get_team_by_name",
    "hash_secret",
    "list_artifacts",
    "list_datasets",
    "list_jobs",
    "list_models",
    "record_progress",
    "revoke_api_key",
    "start_job",
]

ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)
"""Job states that can still change; the other three are final."""

KEY_PREFIX = "mpq_"
# Characters of a secret kept in clear (``ApiKey.prefix``): "mpq_" and 8 random ones.
SHOWN_CHARS = len(KEY_PREFIX) + 8
TEAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_LABEL = 255
# Concurrent uploads of one model name can race for a version number; retry this often.
VERSION_ATTEMPTS = 5


def create_team(session: Session, *, name: str) -> Team:
    """Create a team called ``name`` (letters, digits, ``_.-``; at most 64 characters).

    Raises:
        InvalidNameError: ``name`` does not fit the pattern.
        ConflictError: a team called ``name`` exists already.
    """
    end_reads(session)
    if not TEAM_NAME.fullmatch(name):
        raise InvalidNameError(
            f"invalid team name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if find_team_by_name(session, name) is not None:
        raise ConflictError(f"a team named {name!r} exists already; choose another name")
    team = Team(name=name)
    session.add(team)
    try:
        session.commit()
    except IntegrityError:  # created by someone else since the check above
        session.rollback()
        raise ConflictError(f"a team named {name!r} exists already; choose another name") from None
    return team


def find_team_by_name(session: Session, name: str) -> Team | None:
    """The team called ``name``, or ``None``."""
    return session.scalars(select(Team).where(Team.name == name)).one_or_none()


def get_team_by_name(session: Session, name: str) -> Team:
    """The team called ``name``.

    Raises:
        NotFoundError: no team has that name.
    """
    team = find_team_by_name(session, name)
    if team is None:
        raise NotFoundError(
            f"no team named {name!r}; create it with `mpq admin create-team {name}`"
        )
    return team


def hash_secret(secret: str) -> str:
    """Hex sha256 of an API key's secret: what the database stores instead of it.

    A fast hash is enough: secrets are 256 random bits, not guessable passwords.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(session: Session, *, team: Team, name: str) -> tuple[ApiKey, str]:
    """Create an API key for ``team``.

    The secret is ``mpq_`` followed by 43 URL-safe characters (256 random bits). It is
    returned once and never stored: the row keeps its sha256 and its first characters.

    Args:
        session: the database session.
        team: the team the key acts for.
        name: a label for people telling keys apart (1 to 255 characters).

    Returns:
        The committed row and the secret.

    Raises:
        InvalidNameError: ``name`` is empty, too long or has control characters.
    """
    end_reads(session)
    if not 0 < len(name) <= MAX_LABEL or not name.isprintable():
        raise InvalidNameError(
            f"invalid key name {name!r}: use 1 to {MAX_LABEL} printable characters"
        )
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(team_id=team.id, name=name, prefix=secret[:SHOWN_CHARS], hash=hash_secret(secret))
    session.add(key)
    session.commit()
    return key, secret


def find_key(session: Session, secret: str) -> tuple[ApiKey, Team] | None:
    """The live API key ``secret`` and its team, or ``None`` (unknown, malformed, revoked).

    Candidates are found by the clear prefix; hashes are compared in constant time.
    """
    if not secret.startswith(KEY_PREFIX) or len(secret) <= SHOWN_CHARS:
        return None
    digest = hash_secret(secret)
    rows = session.execute(
        select(ApiKey, Team)
        .join(Team, Team.id == ApiKey.team_id)
        .where(ApiKey.prefix == secret[:SHOWN_CHARS], ApiKey.revoked_at.is_(None))
    ).all()
    for key, team in rows:
        if hmac.compare_digest(key.hash, digest):
            return key, team
    return None


def find_team_by_key(session: Session, secret: str) -> Team | None:
    """The team an API key acts for, or ``None`` for an unknown, malformed or revoked key."""
    found = find_key(session, secret)
    return None if found is None else found[1]


def revoke_api_key(session: Session, *, key: ApiKey) -> ApiKey:
    """Revoke ``key`` (idempotent: the first revocation time is kept)."""
    end_reads(session)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key


def create_model(
    session: Session,
    *,
    team: Team,
    name: str,
    kind: ModelKind,
    sha256: str,
    size_bytes: int,
    blob_path: str,
    inventory: dict[str, Any],
    ir_blob_path: str | None = None,
    created_by: ApiKey | None = None,
) -> Model:
    """Record an uploaded model as the next version of ``name`` in ``team``.

    Versions count 1, 2, ... per (team, name). Two concurrent uploads that pick the
    same number collide on commit -- on the unique constraint, or on SQLite on the
    write lock of a stale snapshot -- and the loser rolls back and retries with a
    fresh read. Hence the precondition: ``session`` holds no other pending changes.

    Raises:
        InvalidNameError: ``name`` is empty, too long or has control characters.
        ConflictError: no version could be allocated after several attempts.
    """
    if not 0 < len(name) <= MAX_LABEL or not name.isprintable():
        raise InvalidNameError(
            f"invalid model name {name!r}: use 1 to {MAX_LABEL} printable characters"
        )
    sqlite = session.get_bind().dialect.name == "sqlite"
    for _ in range(VERSION_ATTEMPTS):
        latest = session.scalar(
            select(func.max(Model.version)).where(Model.team_id == team.id, Model.name == name)
        )
        row = Model(
            team_id=team.id, name=name, version=(latest or 0) + 1, kind=kind, sha256=sha256,
            size_bytes=size_bytes, blob_path=blob_path, ir_blob_path=ir_blob_path,
            inventory=inventory, created_by=created_by,
        )  # fmt: skip
        session.add(row)
        try:
            session.commit()
        except (IntegrityError, OperationalError) as exc:
            session.rollback()
            if isinstance(exc, OperationalError) and not sqlite:
                raise
            continue
        return row
    raise ConflictError(f"could not allocate a version for model {name!r}; try again")


def find_model(session: Session, *, team: Team, model_id: int) -> Model | None:
    """Model ``model_id`` if it belongs to ``team``, else ``None`` (another team's too)."""
    return session.scalars(select(Model).filter_by(id=model_id, team_id=team.id)).one_or_none()


def get_model(session: Session, *, team: Team, model_id: int) -> Model:
    """Model ``model_id`` of ``team``.

    Raises:
        NotFoundError: no such model, or it belongs to another team (indistinguishable).
    """
    row = find_model(session, team=team, model_id=model_id)
    if row is None:
        raise NotFoundError(f"no model with id {model_id}; list yours with GET /v1/models")
    return row


def list_models(session: Session, *, team: Team, skip: int = 0, limit: int = 100) -> list[Model]:
    """``team``'s models, newest first, ``limit`` of them after the first ``skip``."""
    query = select(Model).where(Model.team_id == team.id)
    query = query.order_by(Model.created_at.desc(), Model.id.desc()).offset(skip).limit(limit)
    return list(session.scalars(query))


def count_models(session: Session, *, team: Team) -> int:
    """How many models ``team`` has."""
    return session.scalar(select(func.count()).where(Model.team_id == team.id)) or 0


def create_dataset(
    session: Session,
    *,
    team: Team,
    name: str,
    sha256: str,
    size_bytes: int,
    blob_path: str,
    num_samples: int,
    inputs: dict[str, Any],
    model: Model | None = None,
    created_by: ApiKey | None = None,
) -> Dataset:
    """Record an uploaded, validated data file of ``team``.

    Raises:
        InvalidNameError: ``name`` is empty, too long or has control characters.
    """
    end_reads(session)
    if not 0 < len(name) <= MAX_LABEL or not name.isprintable():
        raise InvalidNameError(
            f"invalid dataset name {name!r}: use 1 to {MAX_LABEL} printable characters"
        )
    row = Dataset(
        team_id=team.id, name=name, sha256=sha256, size_bytes=size_bytes, blob_path=blob_path,
        num_samples=num_samples, inputs=inputs, model_id=None if model is None else model.id,
        created_by=created_by,
    )  # fmt: skip
    session.add(row)
    session.commit()
    return row


def find_dataset(session: Session, *, team: Team, dataset_id: int) -> Dataset | None:
    """Dataset ``dataset_id`` if it belongs to ``team``, else ``None`` (another team's too)."""
    return session.scalars(select(Dataset).filter_by(id=dataset_id, team_id=team.id)).one_or_none()


def get_dataset(session: Session, *, team: Team, dataset_id: int) -> Dataset:
    """Dataset ``dataset_id`` of ``team``.

    Raises:
        NotFoundError: no such dataset, or it belongs to another team (indistinguishable).
    """
    row = find_dataset(session, team=team, dataset_id=dataset_id)
    if row is None:
        raise NotFoundError(f"no dataset with id {dataset_id}; list yours with GET /v1/datasets")
    return row


def list_datasets(
    session: Session, *, team: Team, skip: int = 0, limit: int = 100
) -> list[Dataset]:
    """``team``'s datasets, newest first, ``limit`` of them after the first ``skip``."""
    query = select(Dataset).where(Dataset.team_id == team.id)
    query = query.order_by(Dataset.created_at.desc(), Dataset.id.desc()).offset(skip).limit(limit)
    return list(session.scalars(query))


def count_datasets(session: Session, *, team: Team) -> int:
    """How many datasets ``team`` has."""
    return session.scalar(select(func.count()).where(Dataset.team_id == team.id)) or 0


def create_job(
    session: Session,
    *,
    team: Team,
    model: Model,
    dataset: Dataset,
    config: dict[str, Any],
    trials_total: int,
    created_by: ApiKey | None = None,
) -> Job:
    """Record a queued job of ``team`` (committed: the caller enqueues it afterwards)."""
    end_reads(session)
    row = Job(
        team_id=team.id, model_id=model.id, dataset_id=dataset.id, status=JobStatus.QUEUED,
        config=config, trials_total=trials_total, trials_done=0,
        created_by=created_by,
    )  # fmt: skip
    session.add(row)
    session.commit()
    row.study_name = f"job-{row.id}"
    session.commit()
    return row


def find_job(session: Session, *, team: Team, job_id: int) -> Job | None:
    """Job ``job_id`` if it belongs to ``team``, else ``None`` (another team's too)."""
    return session.scalars(select(Job).filter_by(id=job_id, team_id=team.id)).one_or_none()


def get_job(session: Session, *, team: Team, job_id: int) -> Job:
    """Job ``job_id`` of ``team``.

    Raises:
        NotFoundError: no such job, or it belongs to another team (indistinguishable).
    """
    row = find_job(session, team=team, job_id=job_id)
    if row is None:
        raise NotFoundError(f"no job with id {job_id}; list yours with GET /v1/jobs")
    return row


def find_job_by_id(session: Session, job_id: int) -> Job | None:
    """Job ``job_id`` whatever its team (for workers, which act for every team)."""
    return session.get(Job, job_id, populate_existing=True)


def list_jobs(
    session: Session,
    *,
    team: Team,
    status: JobStatus | None = None,
    skip: int = 0,
    limit: int = 100,
) -> list[Job]:
    """``team``'s jobs (in ``status`` if given), newest first, paginated."""
    query = select(Job).where(Job.team_id == team.id)
    if status is not None:
        query = query.where(Job.status == status)
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).offset(skip).limit(limit)
    return list(session.scalars(query))


def count_jobs(session: Session, *, team: Team, status: JobStatus | None = None) -> int:
    """How many jobs ``team`` has (in ``status`` if given)."""
    query = select(func.count()).where(Job.team_id == team.id)
    if status is not None:
        query = query.where(Job.status == status)
    return session.scalar(query) or 0


def cancel_job(session: Session, *, job: Job) -> Job:
    """Cancel ``job`` if it is queued or running (idempotent on a cancelled job).

    Workers see the new state between trials and stop.

    Raises:
        ConflictError: the job has already succeeded or failed.
    """
    end_reads(session)
    done = session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.CANCELLED, finished_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]
    session.commit()
    session.refresh(job)
    if not done and job.status != JobStatus.CANCELLED:
        raise ConflictError(f"job {job.id} has already {job.status.value}; it cannot be cancelled")
    return job


def start_job(session: Session, *, job_id: int, baseline: dict[str, Any]) -> bool:
    """Mark job ``job_id`` running with its float ``baseline``; False if it is not active."""
    end_reads(session)
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.RUNNING, baseline=baseline,
                started_at=func.coalesce(Job.started_at, utcnow()))
    ).rowcount  # type: ignore[attr-defined]  # fmt: skip
    session.commit()
    return bool(done)


def record_progress(
    session: Session, *, job_id: int, trials_done: int, best: dict[str, Any] | None
) -> JobStatus | None:
    """Store a running job's progress; return its state now (``None``: the job is gone).

    Several trial runners report; a report older than one already stored (fewer trials
    done) changes nothing, so ``trials_done`` never goes back.
    """
    end_reads(session)
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING, Job.trials_done <= trials_done)
        .values(trials_done=trials_done, best=best)
    )
    session.commit()
    return session.scalar(select(Job.status).where(Job.id == job_id))


def finish_job(
    session: Session,
    *,
    job_id: int,
    result: dict[str, Any],
    trials_done: int,
    artifacts: list[tuple[str, str, int, str]],
) -> bool:
    """Mark a running job succeeded with its result and ``(name, key, size, sha256)`` files.

    Idempotent: artifacts already recorded (a re-run finalize) are replaced. Returns
    False, changing nothing, when the job is no longer running (cancelled meanwhile).
    """
    end_reads(session)
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(status=JobStatus.SUCCEEDED, result=result, trials_done=trials_done,
                finished_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]  # fmt: skip
    if not done:
        session.rollback()
        return False
    existing = {
        a.name: a for a in session.scalars(select(Artifact).where(Artifact.job_id == job_id))
    }
    for name, key, size, sha in artifacts:
        row = existing.get(name) or Artifact(job_id=job_id, name=name)
        row.blob_path, row.size_bytes, row.sha256 = key, size, sha
        session.add(row)
    session.commit()
    return True


def fail_job(session: Session, *, job_id: int, code: str, message: str) -> bool:
    """Mark an active job failed with an error ``code`` and ``message``; False if not active."""
    end_reads(session)
    done = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(status=JobStatus.FAILED, error_code=code, error_message=message,
                finished_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]  # fmt: skip
    session.commit()
    return bool(done)


def list_artifacts(session: Session, *, job: Job) -> list[Artifact]:
    """The files ``job`` produced, by name."""
    query = select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.name)
    return list(session.scalars(query))


def find_artifact(session: Session, *, job: Job, name: str) -> Artifact | None:
    """``job``'s artifact called ``name``, or ``None``."""
    query = select(Artifact).where(Artifact.job_id == job.id, Artifact.name == name)
    return session.scalars(query).one_or_none()


def get_artifact(session: Session, *, job: Job, name: str) -> Artifact:
    """``job``'s artifact called ``name``.

    Raises:
        NotFoundError: the job has no such artifact (yet).
    """
    row = find_artifact(session, job=job, name=name)
    if row is None:
        raise NotFoundError(
            f"job {job.id} has no artifact {name!r}; list them with GET /v1/jobs/{job.id}/artifacts"
        )
    return row
