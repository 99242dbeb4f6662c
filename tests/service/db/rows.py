"""Rows the repository tests build on: a model, a dataset, a job, with placeholder files."""

from __future__ import annotations

from sqlalchemy.orm import Session

from search import JobSpec
from service.db import ApiKey, Dataset, Job, Model, ModelKind, Team
from service.db.repos import create_dataset, create_job, create_model

__all__ = ["add_dataset", "add_job", "add_model"]


def add_model(session: Session, team: Team, name: str = "digits") -> Model:
    """A ``.pt2`` model row named ``name`` (the next version) with an empty inventory."""
    return create_model(
        session,
        team=team,
        name=name,
        kind=ModelKind.PT2,
        sha256="0" * 64,
        size_bytes=10,
        blob_path=f"models/{name}",
        inventory={"layers": []},
    )


def add_dataset(session: Session, team: Team, model: Model, name: str = "d") -> Dataset:
    """A one-sample dataset row validated for ``model``."""
    return create_dataset(
        session,
        team=team,
        name=name,
        sha256="1" * 64,
        size_bytes=1,
        blob_path=f"datasets/{name}",
        num_samples=1,
        inputs={},
        model=model,
    )


def add_job(session: Session, team: Team, model: Model, *, created_by: ApiKey | None = None) -> Job:
    """A queued 3-trial job on ``model`` and a dataset of its own."""
    dataset = add_dataset(session, team, model)
    spec = JobSpec(trials=3)
    return create_job(
        session, team=team, model=model, dataset=dataset, spec=spec, created_by=created_by
    )
