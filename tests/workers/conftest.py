"""A real job stack: the API under uvicorn and ``mpq worker`` (a Celery worker) processes.

Both read the same ``MPQ_*`` environment: one data directory (SQLite database, blobs)
and, by default, the embedded SQLAlchemy/SQLite broker in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.api.conftest import ROOT, Server, upload_digits
from tests.service.conftest import postgres_url, require_redis

__all__ = [
    "job_body",
    "postgres_url",
    "redis_url",
    "require_redis",
    "start_worker",
    "upload_digits",
    "wait_for",
    "worker_log",
]

JOB_TIMEOUT_S = 600
FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def redis_url() -> str:
    """The test Redis server's URL (skips where it is down; fails under CI)."""
    return require_redis()


@contextmanager
def start_worker(
    server: Server, name: str = "w1", *, concurrency: int = 1, **extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``mpq worker`` with ``server``'s settings (plus ``extra``); stop it after.

    The worker leads a process group of its own (its pool processes included), so a
    test can SIGKILL all of it with ``os.killpg(proc.pid, signal.SIGKILL)``.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    env |= {
        **server.env,
        "MPQ_DATA_DIR": str(server.data_dir),
        "MPQ_DATABASE_URL": server.database_url,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    log_path = server.data_dir / f"worker-{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 -- closed after the worker stops
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
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # pool processes a SIGKILLed main left behind
        log.close()


def worker_log(server: Server, name: str = "w1") -> str:
    path: Path = server.data_dir / f"worker-{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def job_body(model_id: int, dataset_id: int, **over: Any) -> dict[str, Any]:
    """A digits job request (16 trials, one runner) with ``over`` replacing fields."""
    body: dict[str, Any] = {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "metric": "accuracy",
        "targets": {"max_drop": 0.01},
        "space": ["int2", "int3", "int4", "int8", "cb16"],
        "budget": {"trials": 16},
        "seed": 0,
        "parallelism": 1,
    }
    return body | over


def wait_for(
    server: Server,
    c: httpx.Client,
    job_id: int,
    done: Callable[[dict[str, Any]], bool],
    *,
    timeout_s: float = JOB_TIMEOUT_S,
    logs: tuple[str, ...] = ("w1",),
) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{job_id}`` until ``done(job)``; fail with the workers' logs."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if done(job):
            return job
        if time.monotonic() > deadline:
            text = "\n".join(worker_log(server, n) for n in logs)
            pytest.fail(f"job {job_id} stuck in {job['status']} ({job['trials_done']}):\n{text}")
        time.sleep(0.25)
