"""Adding a model: import it in isolation into IR, keep both files as blobs, record it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sqlalchemy.orm import Session

from engine.io.importers import import_model
from engine.ir import save_ir
from engine.transforms import inventory
from service.blobs import BlobStore, sha256_file
from service.db.models import ApiKey, Model, ModelKind, Team
from service.db.repos import check_label, create_model
from service.domain._blobs import forget_blobs
from service.domain.quotas import check_storage

__all__ = ["add_model", "display_name"]

MAX_NAME_CHARS = 100
_KEPT = frozenset(" ._+-()")


def add_model(
    session: Session,
    *,
    store: BlobStore,
    team: Team,
    name: str,
    path: Path,
    trust: bool,
    sha256: str | None = None,
    created_by: ApiKey | None = None,
    filename: str | None = None,
) -> Model:
    """Import the model file at ``path`` through the isolated importer; record its next version.

    Two blobs are kept: the file as given (``models/<sha256>.<ext>``) and the IR the
    importer made of it (``ir/<sha256 of the file>.ir``), which is all workers load.
    Whatever fails, no row, no new blob and no temporary file remain. ``name`` is checked
    before the (seconds long) import; ``session`` is first used to insert the row, so it
    holds no database connection during the import.

    Args:
        session: the database session (no pending changes).
        store: the blob store.
        team: the owning team.
        name: the model's name; versions count up per (team, name).
        path: the model file (``.pt2`` or ``.onnx``). A temporary file of ``store`` (an
            upload) is consumed; any other file is copied and left as it was.
        trust: import .pt2 files without isolation where bubblewrap is unavailable.
        sha256: the file's hex sha256 when already known (an upload hashed on arrival).
        created_by: the API key that added it.
        filename: the name the user knows the file by (an upload's client filename);
            the importer's messages name the file so (:func:`display_name`), never by
            its temporary name. ``path``'s name when ``None``.

    Raises:
        InvalidNameError: ``name`` is empty, blank, too long or has control characters.
        MPQError: the importer's error for an unacceptable file, or the repository's.
    """
    temp = store.stage(path)
    made: list[str] = []
    folder = store.new_temp_dir()
    try:
        check_label(name, what="model")
        size = temp.stat().st_size
        check_storage(session, team=team, adding=size)
        digest = sha256 or sha256_file(temp)[1]
        # The importer names the file it reads in its messages: a link named as the user
        # knows it, in a private folder (so an ONNX file's external data can name nothing
        # else either).
        named = folder / display_name(Path(path).name if filename is None else filename)
        os.link(temp, named)
        imported = import_model(named, trust_uploads=trust)
        document = inventory(imported.ir).to_json()
        ir_temp = store.new_temp()
        try:
            save_ir(imported.ir, ir_temp)
            ir_key, created = store.commit(ir_temp, kind="ir", sha256=digest, ext="ir")
        finally:
            ir_temp.unlink(missing_ok=True)
        made += [ir_key] if created else []
        key, created = store.commit(temp, kind="models", sha256=digest, ext=imported.kind)
        made += [key] if created else []
        return create_model(
            session,
            team=team,
            name=name,
            kind=ModelKind(imported.kind),
            sha256=digest,
            size_bytes=size,
            blob_path=key,
            ir_blob_path=ir_key,
            inventory=document,
            created_by=created_by,
        )
    except BaseException:
        forget_blobs(session, store, made)
        raise
    finally:
        temp.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


def display_name(filename: str) -> str:
    """``filename`` as a safe single file name: its last path part, letters, digits and
    `` ._+-()`` kept, anything else ``_``, at most :data:`MAX_NAME_CHARS`, no leading dot;
    ``model`` when nothing is left."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c if c.isalnum() or c in _KEPT else "_" for c in base)
    return kept[:MAX_NAME_CHARS].lstrip(". ") or "model"
