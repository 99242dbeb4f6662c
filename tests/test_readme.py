"""The README's quickstarts, run as written: the ``curl`` one against a real ``mpq up``.

The shell blocks to run are the fenced ```` ```bash ```` blocks right after a
``<!-- readme-test: NAME -->`` line in README.md; the blocks of one name are joined
and run with ``bash -euo pipefail`` in a scratch directory that holds
``examples/out/digits.pt2`` and ``digits.npz`` (the session's trained example model).
Only what must differ is supplied from outside, through the variables the README itself
uses: ``MPQ_URL`` and ``MPQ_API_KEY`` (the key ``mpq up`` printed), and ``mpq`` on
``PATH``, a shim that runs :data:`CLI_MODULE` with this checkout's code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Digits
from tests.service.api.conftest import free_port

CLI_MODULE = "commands"
"""The module behind the ``mpq`` command (``python -m CLI_MODULE`` is ``mpq``)."""

README = ROOT / "README.md"
BLOCK = re.compile(r"^<!-- readme-test: (\w+) -->\n```bash\n(.*?)^```$", re.M | re.S)
EVAL_LINE = re.compile(r"^accuracy: (\d\.\d+) on 540 samples \(mpq\)$", re.M)
STARTUP_S = 120.0
API_BLOCK_S = 600.0
CLI_BLOCK_S = 300.0
STOP_S = 30.0


def readme_block(name: str) -> str:
    """The README's ``bash`` blocks marked ``<!-- readme-test: name -->``, joined."""
    blocks = [body for marker, body in BLOCK.findall(README.read_text()) if marker == name]
    assert blocks, f"README.md has no ```bash block after <!-- readme-test: {name} -->"
    return "\n".join(blocks)


def test_readme_marks_both_quickstarts() -> None:
    names = {marker for marker, _ in BLOCK.findall(README.read_text())}
    assert names == {"api", "cli"}


@pytest.fixture
def workdir(tmp_path: Path, digits: Digits) -> Path:
    """A scratch directory laid out as the README assumes: ``examples/out/digits.*``."""
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is not installed; the README's quickstart uses it")
            pytest.skip(f"{tool} is not installed")
    out = tmp_path / "work" / "examples" / "out"
    out.mkdir(parents=True)
    for source in (digits.pt2, digits.npz):
        shutil.copy(source, out / source.name)
    return tmp_path / "work"


def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's shell: ``mpq`` on ``PATH`` (this checkout's code), MPQ state in ``tmp_path``.

    Every inherited ``MPQ_*`` variable is dropped, so the README runs on the defaults
    except the data and cache directories.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "mpq"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {CLI_MODULE} "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    python_path = [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(python_path),
        "PYTHONUNBUFFERED": "1",
        "MPQ_DATA_DIR": str(tmp_path / "data"),
        "MPQ_CACHE_DIR": str(tmp_path / "cache"),
    }
    return env


def run_block(name: str, *, cwd: Path, env: dict[str, str], timeout: float) -> str:
    """Run README block ``name`` under ``bash -euo pipefail``; return its stdout."""
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block(name)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"README block {name!r} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


class MpqUp:
    """``mpq up`` in a subprocess; stdout goes to a file polled for its lines."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.out = tmp_path / "up.out"
        self.err = tmp_path / "up.err"
        port = self.url.rsplit(":", 1)[1]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", CLI_MODULE, "up", "--host", "127.0.0.1", "--port", port],
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=err,
            )

    def wait_ready(self) -> str:
        """Wait for ``MPQ is serving at URL``; return the first API key it printed."""
        deadline = time.monotonic() + STARTUP_S
        while f"MPQ is serving at {self.url}" not in self.out.read_text():
            assert self.process.poll() is None, f"mpq up exited:\n{self.logs()}"
            assert time.monotonic() < deadline, f"mpq up not ready in {STARTUP_S} s:\n{self.logs()}"
            time.sleep(0.2)
        key = re.search(r"^API key: (mpq_\S+)$", self.out.read_text(), re.M)
        assert key is not None, self.logs()
        return key[1]

    def logs(self) -> str:
        return f"{self.out.read_text()}\n{self.err.read_text(errors='replace')}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # mpq up stops its API and worker
            try:
                self.process.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def mpq_up(tmp_path: Path) -> Iterator[tuple[MpqUp, dict[str, str]]]:
    env = user_env(tmp_path)
    up = MpqUp(tmp_path, env)
    try:
        yield up, env
    finally:
        up.stop()


def test_api_quickstart_runs_a_job_whose_model_evaluates_as_reported(
    workdir: Path, mpq_up: tuple[MpqUp, dict[str, str]]
) -> None:
    up, env = mpq_up
    key = up.wait_ready()
    stdout = run_block(
        "api", cwd=workdir, env=env | {"MPQ_URL": up.url, "MPQ_API_KEY": key}, timeout=API_BLOCK_S
    )

    auth = {"Authorization": f"Bearer {key}"}
    listed = httpx.get(f"{up.url}/v1/jobs", headers=auth, timeout=10).json()
    assert listed["count"] == 1, listed
    job = httpx.get(f"{up.url}/v1/jobs/{listed['data'][0]['id']}", headers=auth, timeout=10).json()
    assert job["status"] == "succeeded", job
    chosen = job["chosen"]
    assert job["result"]["met_targets"] is True
    assert chosen["metric"] >= job["baseline"]["metric"] - 0.01
    # The downloaded file is the reported artifact, and `mpq eval` of it gives the metric.
    assert (workdir / "model.mpq").stat().st_size == chosen["file_bytes"]
    measured = EVAL_LINE.search(stdout)
    assert measured is not None, stdout
    assert float(measured[1]) == pytest.approx(chosen["evaluation_metric"], abs=5e-7)


def test_cli_quickstart_searches_and_evaluates(workdir: Path, tmp_path: Path) -> None:
    stdout = run_block("cli", cwd=workdir, env=user_env(tmp_path), timeout=CLI_BLOCK_S)

    assert "4 quantizable layers" in stdout
    result = json.loads((workdir / "out" / "search" / "result.json").read_text())
    assert result["met_targets"] is True
    measured = EVAL_LINE.search(stdout)
    assert measured is not None, stdout
    assert float(measured[1]) == pytest.approx(result["chosen"]["evaluation_metric"], abs=5e-7)
