"""The blob store's stale deletion: a blob reused meanwhile is never removed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from service.blobs import BlobStore


def _commit(store: BlobStore, data: bytes) -> str:
    temp = store.new_temp()
    temp.write_bytes(data)
    key, _, _, _ = store.commit_file(temp, kind="artifacts", ext="bin")
    return key


def _age(store: BlobStore, key: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(store.path(key), (then, then))


def test_an_old_blob_is_removed_and_a_young_one_kept(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    old, young = _commit(store, b"old"), _commit(store, b"young")
    _age(store, old, 7200)
    assert store.delete_if_stale(old, older_than_s=3600) is True
    assert not store.path(old).exists()
    assert store.delete_if_stale(young, older_than_s=3600) is False
    assert store.path(young).read_bytes() == b"young"
    assert store.delete_if_stale(old, older_than_s=3600) is False  # gone already
    # nothing is left behind in the blob's directory but the kept blob
    assert sorted(p.name for p in store.path(young).parent.iterdir()) == [Path(young).name]


def test_reusing_a_blob_makes_it_young_again(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    key = _commit(store, b"same bytes")
    _age(store, key, 7200)
    again = store.new_temp()
    again.write_bytes(b"same bytes")
    key2, created, _, _ = store.commit_file(again, kind="artifacts", ext="bin")
    assert key2 == key and created is False
    assert time.time() - store.path(key).stat().st_mtime < 60
    assert store.delete_if_stale(key, older_than_s=3600) is False
    assert store.path(key).read_bytes() == b"same bytes"


def test_a_commit_after_the_blob_was_removed_links_it_anew(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    key = _commit(store, b"bytes")
    _age(store, key, 7200)
    assert store.delete_if_stale(key, older_than_s=3600)
    temp = store.new_temp()
    temp.write_bytes(b"bytes")
    key2, created, _, _ = store.commit_file(temp, kind="artifacts", ext="bin")
    assert key2 == key and created is True and store.path(key).read_bytes() == b"bytes"
