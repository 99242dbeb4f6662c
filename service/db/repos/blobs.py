"""Which rows refer to a blob: a blob nobody refers to may be deleted."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db.models import Artifact, Dataset, Model

__all__ = ["blob_in_use"]


def blob_in_use(session: Session, key: str) -> bool:
    """Whether a model, dataset or artifact row refers to blob ``key``."""
    refs = (
        select(Model.id).where((Model.blob_path == key) | (Model.ir_blob_path == key)),
        select(Dataset.id).where(Dataset.blob_path == key),
        select(Artifact.id).where(Artifact.blob_path == key),
    )
    return any(session.scalar(q.limit(1)) is not None for q in refs)
