"""Undoing blobs a failed operation created, unless a row has come to refer to them."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from service.blobs import BlobStore
from service.db.repos import blob_in_use

__all__ = ["forget_blobs"]


def forget_blobs(session: Session, store: BlobStore, keys: Iterable[str]) -> None:
    """Roll ``session`` back, then delete each blob of ``keys`` that no row refers to.

    Identical files share one blob, so a blob this operation created may meanwhile be
    another row's (a concurrent upload of the same bytes): that one is kept.
    """
    session.rollback()
    for key in keys:
        if not blob_in_use(session, key):
            store.delete(key)
