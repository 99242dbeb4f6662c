"""Prove that the crafted archives in ``malicious.py`` execute code under ``torch.export.load``.

Each archive is loaded in a separate interpreter so that the payload never runs inside the test
process. The load is allowed to fail afterwards; only the marker file matters.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.engine.io.malicious import VECTORS, build_malicious_pt2

_LOAD_SNIPPET = "import sys, torch; torch.export.load(sys.argv[1])"
_TIMEOUT_S = 120


@pytest.mark.parametrize("vector", VECTORS)
def test_plain_torch_export_load_executes_payload(vector: str, tmp_path: Path) -> None:
    """Plain ``torch.export.load`` on the crafted archive creates the marker file.

    Args:
        vector: Attack vector under test.
        tmp_path: Per-test temporary directory.
    """
    marker = (tmp_path / f"{vector}.pwned").resolve()
    archive = build_malicious_pt2(vector, tmp_path / f"{vector}.pt2", marker)
    assert zipfile.is_zipfile(archive)
    assert not marker.exists()

    result = subprocess.run(
        [sys.executable, "-c", _LOAD_SNIPPET, str(archive)],
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
        cwd=tmp_path,
    )

    assert marker.exists(), (
        f"payload for {vector!r} did not run (rc={result.returncode})\n{result.stderr[-4000:]}"
    )
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("vector", VECTORS)
def test_build_is_deterministic(vector: str, tmp_path: Path) -> None:
    """Building the same vector twice yields byte-identical archives.

    Args:
        vector: Attack vector under test.
        tmp_path: Per-test temporary directory.
    """
    marker = (tmp_path / "marker").resolve()
    first = build_malicious_pt2(vector, tmp_path / "a.pt2", marker).read_bytes()
    second = build_malicious_pt2(vector, tmp_path / "b.pt2", marker).read_bytes()
    assert first == second
    assert not marker.exists()
