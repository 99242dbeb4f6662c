"""The isolated child process: what it can reach, and its limits."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import ImportFailedError, SandboxUnavailableError
from engine.io import Limits, check_isolation, isolation_available, run_isolated


def test_sandbox_blocks_host_writes_network_and_environment() -> None:
    assert isolation_available(), "bubblewrap must be installed (make install does it as root)"
    report = check_isolation()
    assert not report.wrote_host_path
    assert not report.wrote_outside_out
    assert not report.wrote_input
    assert not report.connected_to_host
    assert report.leaked_env == ()
    assert report.isolated


def test_probe_detects_leaks_when_run_without_isolation(tmp_path: Path) -> None:
    """The self-check is only worth something if it sees escapes where there is no sandbox."""
    (tmp_path / "out").mkdir()
    (tmp_path / "in").write_text("input")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = str(listener.getsockname()[1])
        args = [str(tmp_path / p) for p in ("in", "out", "escape")]
        subprocess.run([sys.executable, "-m", "engine.io._sandbox_check", *args, port], check=True)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["wrote_host_path"] and report["connected"] and report["wrote_input"]
    assert (tmp_path / "escape").read_text() == "escaped"


def test_wall_clock_timeout_kills_the_child(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImportFailedError, match="longer than"):
        run_isolated(
            "engine.io.importers._pt2_child",
            [],
            input_file=digits.pt2,
            out_dir=tmp_path,
            limits=Limits(timeout_s=0.5),
        )
    assert not (tmp_path / "model.mpqir").exists()


def test_memory_limit_stops_the_child(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_isolated(
        "engine.io.importers._pt2_child",
        [],
        input_file=digits.pt2,
        out_dir=tmp_path,
        limits=Limits(memory_bytes=256 * 1024**2),
    )
    assert result.returncode != 0
    assert "failed to map segment" in result.stderr or "MemoryError" in result.stderr
    assert not (tmp_path / "model.mpqir").exists()


def test_only_engine_modules_run(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only engine modules"):
        run_isolated("os", [], input_file=tmp_path, out_dir=tmp_path)


def test_refuses_without_isolation_unless_trusted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With bubblewrap off PATH, import is refused with a message saying how to enable it."""
    monkeypatch.setenv("PATH", str(tmp_path))
    isolation_available.cache_clear()
    try:
        with pytest.raises(SandboxUnavailableError, match="apt-get install bubblewrap"):
            run_isolated("engine.io._sandbox_check", [], input_file=tmp_path, out_dir=tmp_path)
    finally:
        monkeypatch.undo()
        isolation_available.cache_clear()


def test_trusted_mode_imports_without_isolation_and_warns(
    digits,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    isolation_available.cache_clear()
    try:
        result = run_isolated(
            "engine.io.importers._pt2_child",
            [],
            input_file=digits.pt2,
            out_dir=tmp_path,
            trust_uploads=True,
        )
    finally:
        monkeypatch.undo()
        isolation_available.cache_clear()
    assert result.returncode == 0 and not result.isolated
    assert (tmp_path / "model.mpqir").is_file()
    assert any("WITHOUT isolation" in r.getMessage() for r in caplog.records)
