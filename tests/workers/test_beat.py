"""``mpq beat`` as a real process: it starts, keeps its schedule in the data dir, stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.service.api.conftest import ROOT

STARTUP_S = 60


def test_beat_starts_keeps_its_schedule_in_the_data_dir_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    data, cwd = tmp_path / "data", tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env |= {"MPQ_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "commands", "beat", "--loglevel", "INFO"],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + STARTUP_S
            while "beat: Starting..." not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, "beat did not start in 60 s"
                time.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, log_path.read_text(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = log_path.read_text(errors="replace")
    assert "Traceback" not in output and "CRITICAL" not in output, output
    # The shelve behind the schedule may add a suffix (.db, or .dat/.dir/.bak).
    assert list(data.glob("celerybeat-schedule*")), output
    assert not list(cwd.iterdir())
