"""Datasets: a team's data files, each validated against a model's inputs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.db.models import ApiKey, Dataset, Model, Team
from service.db.repos._names import check_label
from service.db.repos._scoped import Scoped
from service.db.session import end_reads

__all__ = ["count_datasets", "create_dataset", "find_dataset", "get_dataset", "list_datasets"]

DATASETS = Scoped(
    Dataset,
    owner="team_id",
    key="id",
    order=(Dataset.created_at.desc(), Dataset.id.desc()),
    missing=lambda _, dataset_id: (
        f"no dataset with id {dataset_id}; list yours with GET /v1/datasets"
    ),
)


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
    check_label(name, what="dataset")
    row = Dataset(
        team_id=team.id,
        name=name,
        sha256=sha256,
        size_bytes=size_bytes,
        blob_path=blob_path,
        num_samples=num_samples,
        inputs=inputs,
        model_id=None if model is None else model.id,
        created_by=created_by,
    )
    session.add(row)
    session.commit()
    return row


def find_dataset(session: Session, *, team: Team, dataset_id: int) -> Dataset | None:
    """Dataset ``dataset_id`` if it belongs to ``team``, else ``None`` (another team's too)."""
    return DATASETS.find(session, team.id, dataset_id)


def get_dataset(session: Session, *, team: Team, dataset_id: int) -> Dataset:
    """Dataset ``dataset_id`` of ``team``; :class:`NotFoundError` if it is not ``team``'s."""
    return DATASETS.get(session, team.id, dataset_id)


def list_datasets(
    session: Session, *, team: Team, skip: int = 0, limit: int = 100
) -> list[Dataset]:
    """``team``'s datasets, newest first, ``limit`` of them after the first ``skip``."""
    return DATASETS.list(session, team.id, skip=skip, limit=limit)


def count_datasets(session: Session, *, team: Team) -> int:
    """How many datasets ``team`` has."""
    return DATASETS.count(session, team.id)
