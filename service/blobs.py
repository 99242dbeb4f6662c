"""The blob store: uploaded files and artifacts as content-addressed files in one directory.

Layout under ``Settings.blob_dir``::

    tmp/<random>.part          uploads being received (removed on success and on failure)
    tmp/<random>.d/            a job's files being written (finalize), until committed
    models/<sha256>.<ext>      imported model files (``ext``: ``pt2`` or ``onnx``)
    ir/<sha256>.ir             the importer's IR of each model (keyed by the upload's sha256)
    datasets/<sha256>.<ext>    validated data files (``ext``: ``npz`` or ``safetensors``)
    artifacts/<sha256>.<ext>   files jobs produced (``ext`` from the artifact's name)
    jobs/<id>/<name>           files of jobs finished before artifacts were content-addressed

Rows store the path relative to the blob directory (``models/<sha256>.pt2``), so the
directory can move. Identical uploads share one file: a blob is written once, by an
atomic rename in the same file system, and deleted only when no row refers to it.

Only the service's user may read them: directories are created ``0700``, temporary
files ``0600``, and a blob is made ``0600`` as it is committed, whoever wrote it (see
:mod:`service.private_files`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import time
from pathlib import Path

from service.private_files import DIR_MODE, FILE_MODE, make_private_dir, make_private_file

__all__ = ["BlobStore", "sha256_file"]


def sha256_file(path: Path) -> tuple[int, str]:
    """The size in bytes and the hex sha256 of the file at ``path`` (read in 1 MiB chunks)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


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
        """Create an empty, uniquely named ``0600`` temporary file under :attr:`tmp_dir`."""
        make_private_dir(self.tmp_dir)
        path = self.tmp_dir / f"{secrets.token_hex(16)}.part"
        return make_private_file(path, exist_ok=False)

    def new_temp_dir(self) -> Path:
        """Create an empty, uniquely named ``0700`` temporary directory under :attr:`tmp_dir`."""
        make_private_dir(self.tmp_dir)
        path = self.tmp_dir / f"{secrets.token_hex(16)}.d"
        path.mkdir(mode=DIR_MODE)
        os.chmod(path, DIR_MODE)
        return path

    def stage(self, path: Path) -> Path:
        """A temporary file under :attr:`tmp_dir` with ``path``'s bytes, for :meth:`commit`.

        ``path`` itself when it is one already (an upload received there); otherwise a
        copy, so that the caller's file is left as it was.
        """
        if Path(path).resolve().parent == self.tmp_dir.resolve():
            return Path(path)
        temp = self.new_temp()
        shutil.copyfile(path, temp)
        return temp

    def path(self, key: str) -> Path:
        """The absolute path of the blob stored under ``key`` (``models/<sha256>.pt2``)."""
        full = (self.root / key).resolve()
        if not full.is_relative_to(self.root.resolve()):
            raise ValueError(f"blob key {key!r} points outside the blob directory")
        return full

    def commit(self, temp: Path, *, kind: str, sha256: str, ext: str) -> tuple[str, bool]:
        """Move ``temp`` to its content address ``<kind>/<sha256>.<ext>``.

        When that blob exists already (the same bytes were uploaded before), ``temp`` is
        removed instead and the existing file kept, its modification time set to now: a
        blob reused this way is young again, so :meth:`delete_if_stale` leaves it to the
        row about to refer to it. A new blob is ``0600``.

        Args:
            temp: a file under :attr:`tmp_dir` (gone after the call).
            kind: ``models``, ``ir``, ``datasets`` or ``artifacts`` (the subdirectory).
            sha256: hex sha256 of ``temp``'s bytes.
            ext: the file extension, without the dot.

        Returns:
            The blob's key, and whether this call created the blob.
        """
        key = f"{kind}/{sha256}.{ext}"
        final = self.path(key)
        make_private_dir(final.parent)
        os.chmod(temp, FILE_MODE)  # a worker may have written it under any umask
        while True:
            try:
                # A hard link fails if the blob exists: no window where two writers race.
                os.link(temp, final)
                created = True
                break
            except FileExistsError:
                try:
                    os.utime(final)
                    created = False
                    break
                except FileNotFoundError:
                    continue  # deleted in between (delete_if_stale): link it anew
        temp.unlink(missing_ok=True)
        return key, created

    def commit_file(self, temp: Path, *, kind: str, ext: str) -> tuple[str, bool, int, str]:
        """Hash ``temp`` and :meth:`commit` it; return its key, whether it was new, size, sha256."""
        size, sha256 = sha256_file(temp)
        key, created = self.commit(temp, kind=kind, sha256=sha256, ext=ext)
        return key, created, size, sha256

    def delete(self, key: str) -> None:
        """Remove the blob stored under ``key`` (no error if it is gone)."""
        self.path(key).unlink(missing_ok=True)

    def delete_if_stale(self, key: str, *, older_than_s: float) -> bool:
        """Remove blob ``key`` unless it was written or reused in the last ``older_than_s``.

        For a caller that found no row referring to the blob: a concurrent :meth:`commit`
        of the same bytes may be about to add one. The blob is first renamed away (so a
        commit from then on links a new file), and removed only if its modification time
        -- which a reusing commit sets to now -- is still old; else it is put back.

        Returns:
            Whether the blob was removed.
        """
        final = self.path(key)
        tomb = final.with_name(final.name + f".{secrets.token_hex(4)}.deleting")
        try:
            os.rename(final, tomb)
        except FileNotFoundError:
            return False
        if time.time() - tomb.stat().st_mtime >= older_than_s:
            tomb.unlink()
            return True
        # Reused meanwhile: put it back (unless a commit linked the same bytes anew).
        with contextlib.suppress(FileExistsError):
            os.link(tomb, final)
        tomb.unlink()
        return False
