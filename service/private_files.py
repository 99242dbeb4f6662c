"""Files and directories only the service's user can read: the data it keeps on disk.

The data directory holds API key hashes (the SQLite database), uploaded models and
data, and job artifacts: none of it is for other users of the machine. Directories the
service creates are ``0700`` and files ``0600`` whatever the process umask:
:func:`make_private_dir` and :func:`make_private_file` are called where they are
created (the blob store, the SQLite files). The service's processes (``mpq api``,
``mpq worker``, ``mpq beat``, ``mpq up``) also start with :data:`UMASK`, which covers
the files libraries create on their own (SQLite's ``-wal`` and ``-shm`` files take the
database file's mode anyway). Existing files and directories are left as they are: an
operator may have chosen their modes.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "UMASK", "make_private_dir", "make_private_file"]

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077
"""The umask of the service's processes: nothing they create is readable by others."""


def make_private_dir(path: Path) -> Path:
    """Create directory ``path`` and its missing parents, each ``0700``; return ``path``.

    Directories that exist already keep their mode.
    """
    path = Path(path)
    missing = []
    for level in (path, *path.parents):
        if level.exists():
            break
        missing.append(level)
    for level in reversed(missing):
        try:
            level.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process made it meanwhile: its mode is its maker's
        os.chmod(level, DIR_MODE)  # mkdir's mode is masked by the umask
    return path


def make_private_file(path: Path, *, exist_ok: bool = True) -> Path:
    """Create an empty ``0600`` file at ``path`` unless one exists; return ``path``.

    The parent directory must exist. A file that exists already keeps its mode and
    content.

    Raises:
        FileExistsError: ``path`` exists and ``exist_ok`` is false.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        if not exist_ok:
            raise
        return path
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path
