"""Real service processes for benchmarks: a migrated API under uvicorn and ``mpq worker``.

Everything runs as the production commands do, in subprocesses whose environment is
this one stripped of every ``MPQ_*`` variable plus the stack's own: a fresh
``MPQ_DATA_DIR`` (SQLite database, embedded broker, blobs, caches) unless a database
or broker URL is given. Benchmarks must not depend on test code, so this module
repeats the little of ``tests/`` they need.

* :func:`start_api`: ``mpq db upgrade``, ``mpq admin create-team`` / ``create-key``
  for one team, then ``uvicorn service.main:app`` on a free port, up once ``/healthz``
  answers 200.
* :func:`start_worker`: ``mpq worker --concurrency N`` in a process group of its own,
  up once its log says ``ready``.
* :func:`postgres_database`: a throwaway PostgreSQL database, dropped after.
* :func:`redis_queue`: a uniquely named queue on a Redis server, its keys deleted after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
STARTUP_S = 90.0
STOP_S = 30.0


class StackError(RuntimeError):
    """A service process failed to start or a command failed; the message has its log."""


@dataclass
class Stack:
    """A running API and what a benchmark needs to reach it and start workers beside it."""

    url: str
    data_dir: Path
    env: dict[str, str]
    key: str
    process: subprocess.Popen[bytes]

    def client(self, *, timeout: float = 120.0) -> httpx.Client:
        """An HTTP client (keep-alive) authenticated as the stack's team."""
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


@dataclass
class Worker:
    """A running ``mpq worker`` and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    concurrency: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def service_env(data_dir: Path, *, database_url: str | None = None, **extra: str) -> dict[str, str]:
    """This environment without ``MPQ_*``, plus the data directory, database and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    env |= {
        "MPQ_DATA_DIR": str(data_dir),
        "MPQ_DATABASE_URL": database_url or f"sqlite:///{data_dir / 'mpq.db'}",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    return env


def mpq(env: dict[str, str], *args: str) -> str:
    """Run ``python -m commands ARGS`` under ``env``; its stdout (StackError on failure)."""
    proc = subprocess.run(
        [sys.executable, "-m", "commands", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise StackError(f"mpq {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes], *, group: bool) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait()
    if group:  # pool processes a killed main process may have left behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def start_api(data_dir: Path, *, database_url: str | None = None, **extra: str) -> Iterator[Stack]:
    """Migrate, create a team and key, start uvicorn on a free port; yield; stop it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = service_env(data_dir, database_url=database_url, **extra)
    mpq(env, "db", "upgrade")
    mpq(env, "admin", "create-team", "bench")
    key = mpq(env, "admin", "create-key", "--team", "bench").strip()
    port = free_port()
    log_path = data_dir / "api.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.main:app", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_S
            while True:
                if proc.poll() is not None:
                    raise StackError(f"the API exited:\n{log_path.read_text(errors='replace')}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise StackError(f"the API did not come up in {STARTUP_S:.0f} s")
                time.sleep(0.1)
            yield Stack(url, data_dir, env, key, proc)
        finally:
            _stop(proc, group=False)


@contextmanager
def start_worker(stack: Stack, name: str, *, concurrency: int = 1) -> Iterator[Worker]:
    """Start ``mpq worker --concurrency N`` on ``stack``'s settings; yield it once ready."""
    log_path = stack.data_dir / f"worker-{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "commands",
                "worker",
                "--hostname",
                f"{name}@%h",
                "--concurrency",
                str(concurrency),
            ],
            env=stack.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(proc, log_path, concurrency)
        try:
            deadline = time.monotonic() + STARTUP_S
            while " ready." not in worker.log():
                if proc.poll() is not None:
                    raise StackError(f"worker {name} exited:\n{worker.log()}")
                if time.monotonic() > deadline:
                    raise StackError(f"worker {name} not ready in {STARTUP_S:.0f} s")
                time.sleep(0.1)
            yield worker
        finally:
            _stop(proc, group=True)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on ``admin_url``'s server; its URL; dropped (FORCE) after."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"mpq_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def redis_queue(url: str) -> Iterator[str]:
    """A queue name no one else uses on ``url``'s Redis; its kombu keys deleted after."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    client.ping()
    queue = f"mpq-bench-{uuid.uuid4().hex[:8]}"
    try:
        yield queue
    finally:
        keys = list(client.scan_iter(match=f"*{queue}*"))
        if keys:
            client.delete(*keys)
        client.close()


def upload(c: httpx.Client, model: Path, data: Path, name: str) -> tuple[int, int]:
    """Upload a model and its dataset; (model id, dataset id)."""
    with open(model, "rb") as f:
        r = c.post("/v1/models", files={"file": (model.name, f)}, data={"name": name})
    if r.status_code != 201:
        raise StackError(f"model upload answered {r.status_code}: {r.text}")
    model_id = int(r.json()["id"])
    with open(data, "rb") as f:
        r = c.post(
            "/v1/datasets",
            files={"file": (data.name, f)},
            data={"name": name, "model_id": str(model_id)},
        )
    if r.status_code != 201:
        raise StackError(f"dataset upload answered {r.status_code}: {r.text}")
    return model_id, int(r.json()["id"])
