"""The .pt2 screen caps JSON members before reading or parsing them; the sandbox caps memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ImportFailedError, UnsafeArchiveError
from engine.io._sandbox import Limits, isolation_available
from engine.io.importers._pt2_screen import screen_pt2
from engine.io.importers.pt2 import import_pt2
from tests.conftest import Digits
from tests.hostile import pt2_with_json_member


def test_a_64_mib_json_member_is_refused_unread(digits: Digits, tmp_path: Path) -> None:
    path = pt2_with_json_member(digits.pt2, tmp_path / "m.pt2", mib=64)
    assert path.stat().st_size < 24 << 20
    with pytest.raises(UnsafeArchiveError, match=r"declares \d+ bytes") as err:
        screen_pt2(path)
    assert err.value.code == "unsafe_archive"


def test_a_json_member_of_too_many_values_is_refused_unparsed(
    digits: Digits, tmp_path: Path
) -> None:
    path = pt2_with_json_member(digits.pt2, tmp_path / "v.pt2", mib=10)  # 1.25 Mi values
    with pytest.raises(UnsafeArchiveError, match="JSON values"):
        screen_pt2(path)


@pytest.mark.skipif(not isolation_available(), reason="needs bubblewrap")
def test_the_sandbox_memory_limit_gives_a_clear_error(digits: Digits) -> None:
    with pytest.raises(ImportFailedError) as err:
        import_pt2(digits.pt2, limits=Limits(memory_bytes=200 << 20))
    message = err.value.message
    assert "200 MiB of memory" in message and "digits.pt2" in message
    assert "Error" not in message and "Traceback" not in message and "/" not in message
