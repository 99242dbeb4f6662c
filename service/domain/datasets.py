"""Adding a dataset: validate a data file against a model's inputs, keep it, record it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from engine.data import load_dataset
from engine.ir import TensorSpec
from service.blobs import BlobStore, sha256_file
from service.db.models import ApiKey, Dataset, Model, Team
from service.db.repos import check_label, create_dataset, get_model
from service.domain._blobs import forget_blobs
from service.domain.quotas import check_storage

__all__ = ["add_dataset"]


def add_dataset(
    session: Session,
    *,
    store: BlobStore,
    team: Team,
    name: str,
    model_id: int,
    path: Path,
    sha256: str | None = None,
    created_by: ApiKey | None = None,
    filename: str | None = None,
    max_bytes: int = 512 << 20,
) -> Dataset:
    """Validate the data file at ``path`` against model ``model_id``'s inputs; record it.

    The file is read without unpickling (``.npz`` with ``allow_pickle=False``, or
    ``.safetensors``) and kept as ``datasets/<sha256>.<ext>``. Whatever fails, no row,
    no new blob and no temporary file remain.

    Args:
        session: the database session (no pending changes).
        store: the blob store.
        team: the owning team.
        name: the dataset's name.
        model_id: the team's model whose inputs the arrays must match (its inventory).
        path: the data file. A temporary file of ``store`` (an upload) is consumed; any
            other file is copied and left as it was.
        sha256: the file's hex sha256 when already known (an upload hashed on arrival).
        created_by: the API key that added it.
        filename: the file's name as the client gave it; messages name the file by it
            (never by the temporary path it was stored under). ``path``'s name when
            ``None`` or empty.
        max_bytes: limit on the bytes the file's arrays declare, checked before they
            are decompressed or read (``Settings.max_dataset_bytes``).

    Raises:
        InvalidNameError: ``name`` is empty, blank, too long or has control characters.
        NotFoundError: ``model_id`` is not one of the team's models.
        DataTooLargeError: the file declares more than ``max_bytes`` bytes of arrays.
        InvalidDataError: a subclass naming what does not match (see :mod:`engine.data`).
    """
    temp = store.stage(path)
    made: list[str] = []
    try:
        check_label(name, what="dataset")
        model = get_model(session, team=team, model_id=model_id)
        session.commit()  # read only: no connection held while the file is read
        specs = [TensorSpec(d["name"], tuple(d["shape"]), d["dtype"]) for d in _inputs(model)]
        size = temp.stat().st_size
        check_storage(session, team=team, adding=size)
        digest = sha256 or sha256_file(temp)[1]
        data = load_dataset(
            temp, specs, max_bytes=max_bytes, name=_display_name(filename, Path(path).name)
        )
        with open(temp, "rb") as f:
            ext = "npz" if f.read(2) == b"PK" else "safetensors"
        key, created = store.commit(temp, kind="datasets", sha256=digest, ext=ext)
        made += [key] if created else []
        n = data.split("calibration").num_samples + data.split("evaluation").num_samples
        inputs = {s.name: {"shape": list(s.shape), "dtype": s.dtype} for s in specs}
        return create_dataset(
            session,
            team=team,
            name=name,
            sha256=digest,
            size_bytes=size,
            blob_path=key,
            num_samples=n,
            inputs=inputs,
            model=model,
            created_by=created_by,
        )
    except BaseException:
        forget_blobs(session, store, made)
        raise
    finally:
        temp.unlink(missing_ok=True)


def _display_name(filename: str | None, fallback: str) -> str:
    """The client's file name, without any folder part and at most 200 characters."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return (base or fallback)[:200]


def _inputs(model: Model) -> list[dict[str, Any]]:
    return list(model.inventory["inputs"])
