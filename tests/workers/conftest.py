"""A real job stack: the API under uvicorn and ``mpq worker`` (a Celery worker) processes.

Both read the same ``MPQ_*`` environment: one data directory (SQLite database, blobs)
and, by default, the embedded SQLAlchemy/SQLite broker in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.service.api.conftest import ROOT, Server
from tests.service.conftest import postgres_url

__all__ = ["postgres_url", "redis_url", "start_worker"]

REDIS_URL = os.environ.get("MPQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    """The test Redis server's URL (skips where it is down; fails under CI)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"Redis unreachable at {REDIS_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    finally:
        client.close()
    return REDIS_URL


@contextmanager
def start_worker(
    server: Server, name: str = "w1", **extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``mpq worker`` against ``server``'s data directory and database; stop it after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    env |= {
        "MPQ_DATA_DIR": str(server.data_dir), "MPQ_DATABASE_URL": server.database_url,
        "PYTHONUNBUFFERED": "1", **extra,
    }  # fmt: skip
    log_path = server.data_dir / f"worker-{name}.log"
    log = open(log_path, "wb")  # noqa: SIM115 -- closed after the worker stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "worker", "--hostname", f"{name}@%h"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def worker_log(server: Server, name: str = "w1") -> str:
    path: Path = server.data_dir / f"worker-{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""
