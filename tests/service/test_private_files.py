"""Private directories and files: 0700 and 0600 whatever the umask; existing ones kept."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.private_files import make_private_dir, make_private_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_new_directories_and_files_are_private(tmp_path: Path, umask: int) -> None:
    deep = make_private_dir(tmp_path / "a" / "b" / "c")
    for level in (tmp_path / "a", tmp_path / "a" / "b", deep):
        assert _mode(level) == 0o700, level
    db = make_private_file(deep / "mpq.db")
    assert _mode(db) == 0o600 and db.read_bytes() == b""
    with pytest.raises(FileExistsError):
        make_private_file(db, exist_ok=False)


def test_existing_ones_keep_their_mode_and_content(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    shared.chmod(0o750)
    make_private_dir(shared / "sub")
    assert _mode(shared) == 0o750 and _mode(shared / "sub") == 0o700
    f = shared / "f"
    f.write_bytes(b"data")
    f.chmod(0o640)
    assert make_private_file(f) == f
    assert _mode(f) == 0o640 and f.read_bytes() == b"data"
