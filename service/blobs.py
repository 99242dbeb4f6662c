"""The blob store: uploaded files and artifacts as content-addressed files in one directory.

Layout under ``Settings.blob_dir``::

    tmp/<random>.part          uploads being received (removed on success and on failure)
    models/<sha256>.<ext>      imported model files (``ext``: ``pt2`` or ``onnx``)
    datasets/<sha256>.<ext>    validated data files (``ext``: ``npz`` or ``safetensors``)

Rows store the path relative to the blob directory (``models/<sha256>.pt2``), so the
directory can move. Identical uploads share one file: a blob is written once, by an
atomic rename in the same file system, and deleted only when no row refers to it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["BlobStore"]


class BlobStore:
    """Files under one root directory, addressed by ``<kind>/<sha256>.<ext>``.

    Args:
        root: the blob directory (created on first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def tmp_dir(self) -> Path:
        """Where uploads are received: inside the root, so that :meth:`commit` is a rename."""
        return self.root / "tmp"

    def new_temp(self) -> Path:
        """Create an empty, uniquely named temporary file under :attr:`tmp_dir`."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        path = self.tmp_dir / f"{secrets.token_hex(16)}.part"
        path.touch(exist_ok=False)
        return path

    def path(self, key: str) -> Path:
        """The absolute path of the blob stored under ``key`` (``models/<sha256>.pt2``)."""
        full = (self.root / key).resolve()
        if not full.is_relative_to(self.root.resolve()):
            raise ValueError(f"blob key {key!r} points outside the blob directory")
        return full

    def commit(self, temp: Path, *, kind: str, sha256: str, ext: str) -> tuple[str, bool]:
        """Move ``temp`` to its content address ``<kind>/<sha256>.<ext>``.

        When that blob exists already (the same bytes were uploaded before), ``temp`` is
        removed instead and the existing file kept.

        Args:
            temp: a file under :attr:`tmp_dir` (gone after the call).
            kind: ``models`` or ``datasets`` (the subdirectory).
            sha256: hex sha256 of ``temp``'s bytes.
            ext: the file extension, without the dot.

        Returns:
            The blob's key, and whether this call created the blob.
        """
        key = f"{kind}/{sha256}.{ext}"
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A hard link fails if the blob exists: no window where two writers race.
            os.link(temp, final)
            created = True
        except FileExistsError:
            created = False
        temp.unlink(missing_ok=True)
        return key, created

    def delete(self, key: str) -> None:
        """Remove the blob stored under ``key`` (no error if it is gone)."""
        self.path(key).unlink(missing_ok=True)
