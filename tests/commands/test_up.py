"""``mpq up`` as users run it: migrations, a first key, the API, a worker, beat: real processes."""

from __future__ import annotations

import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from service.db import Team, make_engine
from service.supervision import RESTARTS_FILE
from tests.conftest import Digits
from tests.service.api.conftest import ROOT, free_port, upload_digits
from tests.workers.conftest import FINAL, job_body

STARTUP_S = 90
STOP_S = 30
KEY_LINE = re.compile(r"^API key: (mpq_\S+)$")
FAST = {"MPQ_HEARTBEAT_S": "0.5", "MPQ_GRACE_S": "3", "MPQ_RECOVERY_INTERVAL_S": "1"}
METRICS_TOKEN = "up-test-metrics-token"
PIDS_LINE = re.compile(r"^started the API \(pid (\d+)\) and a worker \(pid (\d+), concurrency 2\)$")
BEAT_LINE = re.compile(r"^started beat \(pid (\d+)\), which fires the schedules$")


class Up:
    """A running ``mpq up``: its process and the stdout lines read so far."""

    def __init__(self, data_dir: Path, port: int, **extra: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
        env |= {"MPQ_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **extra}
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir.parent / f"{data_dir.name}-up-{port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "commands", "up", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        # A thread drains stdout so the pipe never fills, whatever the test is doing.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def read_until(self, prefix: str, timeout: float = STARTUP_S) -> str:
        """Read stdout lines until one starts with ``prefix``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no line {prefix!r} in {timeout} s: {self.lines}\n{self.stderr()}"
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"mpq up exited: {self.lines}\n{self.stderr()}"
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def descendants(self) -> set[int]:
        """Pids of every live process below ``mpq up`` (Linux /proc)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found: set[int] = set()
        frontier = {self.process.pid}
        while frontier:
            frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
            found |= frontier
        return found

    def wait_stderr(self, pattern: str, timeout: float = STARTUP_S) -> re.Match[str]:
        """Wait until ``pattern`` matches a line of the stderr log; return the match."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.stderr(), re.MULTILINE)) is None:
            assert self.process.poll() is None, f"mpq up exited:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no {pattern!r} in {timeout} s:\n{self.stderr()}"
            time.sleep(0.2)
        return found

    def stderr(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@contextmanager
def mpq_up(data_dir: Path, **extra: str) -> Iterator[Up]:
    """Start ``mpq up`` on a free port over ``data_dir`` (and ``extra`` ``MPQ_*`` settings);
    kill it if the test did not stop it."""
    up = Up(data_dir, free_port(), **extra)
    try:
        yield up
    finally:
        up.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has yet to reap it


def _teams(data_dir: Path) -> int:
    engine = make_engine(f"sqlite:///{data_dir / 'mpq.db'}")
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Team)) or 0
    finally:
        engine.dispose()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_up_serves_with_a_first_key_and_stops_its_children(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with mpq_up(data) as up:
        key = KEY_LINE.match(up.read_until("API key: "))
        assert key is not None, up.lines
        pids = PIDS_LINE.match(up.read_until("started the API"))
        assert pids is not None, up.lines
        beat = BEAT_LINE.match(up.read_until("started beat"))
        assert beat is not None, up.lines
        children = {int(pids[1]), int(pids[2]), int(beat[1])}
        assert up.read_until("MPQ is serving at ") == f"MPQ is serving at {up.url}"
        assert up.read_until("API docs: ").startswith(f"API docs: {up.url}/docs")
        assert up.lines[0].startswith("migrated sqlite:///") and up.lines[0].endswith(" up to head")

        assert httpx.get(f"{up.url}/healthz", timeout=10).status_code == 200
        auth = {"Authorization": f"Bearer {key[1]}"}
        assert httpx.get(f"{up.url}/v1/models", headers=auth, timeout=10).status_code == 200
        anonymous = httpx.get(f"{up.url}/v1/models", timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthorized"
        # the service's files are its user's only: the children run with umask 077
        for pid in children:
            assert "\nUmask:\t0077\n" in Path(f"/proc/{pid}/status").read_text(), pid
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "mpq.db").stat().st_mode) == 0o600

        below = up.descendants()
        assert children <= below
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(timeout=STOP_S) == 0, up.stderr()
        left = {pid for pid in below if _alive(pid)}
        assert not left, f"processes left running: {left}"
    assert _teams(data) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_up_again_makes_no_new_key_and_prints_how_to_make_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for run in range(2):
        with mpq_up(data) as up:
            up.read_until("MPQ is serving at ")
            keys = [line for line in up.lines if line.startswith("API key: ")]
            hints = [line for line in up.lines if "mpq admin create-key --team default" in line]
            assert (len(keys), len(hints)) == ((1, 0) if run == 0 else (0, 1)), up.lines
            up.process.send_signal(signal.SIGINT)
            assert up.process.wait(timeout=STOP_S) == 0, up.stderr()
    assert _teams(data) == 1


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
        env["MPQ_DATA_DIR"] = str(tmp_path / "data")
        proc = subprocess.run(
            [sys.executable, "-m", "commands", "up", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.startswith(f"error[address_unavailable]: cannot listen on 127.0.0.1:{port}")
    assert not (tmp_path / "data" / "mpq.db").exists()


def _group(pgid: int) -> set[int]:
    """Live pids of process group ``pgid`` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _restarts(c: httpx.Client) -> dict[str, float]:
    r = c.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    found = re.findall(r'^mpq_process_restarts_total\{process="(\w+)"\} (\S+)$', r.text, re.M)
    return {name: float(value) for name, value in found}


def _job_until(
    c: httpx.Client, job_id: int, done: Callable[[dict[str, Any]], bool], timeout: float = 600
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck: {job}"
        time.sleep(0.2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_up_restarts_a_sigkilled_worker_and_api_and_the_job_resumes(
    tmp_path: Path, digits: Digits
) -> None:
    data = tmp_path / "data"
    with mpq_up(data, MPQ_METRICS_TOKEN=METRICS_TOKEN, **FAST) as up:
        key = KEY_LINE.match(up.read_until("API key: "))
        pids = PIDS_LINE.match(up.read_until("started the API"))
        assert key is not None and pids is not None, up.lines
        api, worker = int(pids[1]), int(pids[2])
        up.read_until("MPQ is serving at ")
        auth = {"Authorization": f"Bearer {key[1]}"}
        with httpx.Client(base_url=up.url, headers=auth, timeout=60) as c:
            assert _restarts(c) == {"api": 0, "worker": 0, "beat": 0}
            model_id, dataset_id = upload_digits(c, digits)
            body = job_body(model_id, dataset_id, budget={"trials": 20}, parallelism=2)
            job_id = c.post("/v1/jobs", json=body).json()["id"]
            _job_until(c, job_id, lambda j: j["trials_done"] >= 2 or j["status"] in FINAL)
            pool = _group(worker) - {worker}
            assert pool, "the worker runs a prefork pool (concurrency 2)"
            # The main process alone, as the OOM killer would, mid-job: its pool
            # processes live on until `mpq up` kills the dead worker's process group.
            os.kill(worker, signal.SIGKILL)

            # The API answers while the worker is down, and the worker comes back.
            assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
            died = rf"^mpq up: the worker \(pid {worker}\) was killed by SIGKILL; "
            up.wait_stderr(died + r"restarting it in 1 s \(restart 1\)$", timeout=10)
            new = int(up.wait_stderr(r"^mpq up: restarted the worker \(pid (\d+)\)$")[1])
            assert new != worker and _alive(new)
            assert not {pid for pid in pool if _alive(pid)}, "the dead worker's pool was left"
            assert _restarts(c) == {"api": 0, "worker": 1, "beat": 0}
            job = _job_until(c, job_id, lambda j: j["status"] in FINAL)
            assert job["status"] == "succeeded", job
            assert job["trials_done"] == 20

            os.killpg(api, signal.SIGKILL)  # the API is restarted the same way
            up.wait_stderr(rf"^mpq up: the API \(pid {api}\) was killed by SIGKILL; ", timeout=10)
            up.wait_stderr(r"^mpq up: restarted the API \(pid \d+\)$", timeout=10)
            deadline = time.monotonic() + STARTUP_S
            while True:
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, up.stderr()
                time.sleep(0.2)
            assert _restarts(c) == {"api": 1, "worker": 1, "beat": 0}
            assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
        assert (data / RESTARTS_FILE).stat().st_mode & 0o777 == 0o600
        below = up.descendants()
        up.process.send_signal(signal.SIGTERM)
        assert up.process.wait(timeout=STOP_S) == 0, up.stderr()
        assert not {pid for pid in below if _alive(pid)}
