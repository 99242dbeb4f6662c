"""Artifacts: the files a job produced, by name, each a blob in the blob store."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Artifact, Job
from service.db.repos._scoped import Scoped

__all__ = ["ArtifactFile", "find_artifact", "get_artifact", "list_artifacts", "put_artifacts"]

ArtifactFile = tuple[str, str, int, str]
"""``(name, blob key, size in bytes, sha256)`` of a file a job produced."""

ARTIFACTS = Scoped(
    Artifact,
    owner="job_id",
    key="name",
    order=(Artifact.name.asc(),),
    missing=lambda job_id, name: (
        f"job {job_id} has no artifact {name!r}; list them with GET /v1/jobs/{job_id}/artifacts"
    ),
)


def list_artifacts(session: Session, *, job: Job) -> list[Artifact]:
    """The files ``job`` produced, by name."""
    return ARTIFACTS.list(session, job.id)


def find_artifact(session: Session, *, job: Job, name: str) -> Artifact | None:
    """``job``'s artifact called ``name``, or ``None``."""
    return ARTIFACTS.find(session, job.id, name)


def get_artifact(session: Session, *, job: Job, name: str) -> Artifact:
    """``job``'s artifact called ``name``; :class:`NotFoundError` if it has none (yet)."""
    return ARTIFACTS.get(session, job.id, name)


def put_artifacts(session: Session, *, job_id: int, files: Iterable[ArtifactFile]) -> None:
    """Add ``files`` to job ``job_id``'s artifacts, replacing those of the same name.

    Part of the caller's transaction: nothing is committed here.
    """
    query = select(Artifact).where(Artifact.job_id == job_id)
    existing = {a.name: a for a in session.scalars(query)}
    for name, key, size, sha in files:
        row = existing.get(name) or Artifact(job_id=job_id, name=name)
        row.blob_path, row.size_bytes, row.sha256 = key, size, sha
        session.add(row)
