"""Deleting finished jobs' studies: their trials leave the storage with them."""

from __future__ import annotations

from collections.abc import Iterable

import optuna
from optuna.storages import RDBStorage

from search._study import open_storage

__all__ = ["delete_searches"]


def delete_searches(url: str, names: Iterable[str]) -> list[str]:
    """Delete the studies ``names`` (trials, parameters, values) from storage ``url``.

    Returns:
        The names that were there to delete (a missing study is no error).
    """
    names = list(names)
    if not names:
        return []
    storage = open_storage(url)
    assert storage is not None  # a URL was given
    deleted = []
    try:
        for name in names:
            try:
                optuna.delete_study(study_name=name, storage=storage)
            except KeyError:
                continue
            deleted.append(name)
    finally:
        if isinstance(storage, RDBStorage):
            storage.engine.dispose()
    return deleted
