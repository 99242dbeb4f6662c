"""A real API server: ``uvicorn service.main:app`` in a subprocess on a migrated database.

:func:`start_server` migrates a fresh database (SQLite in a fresh data directory by
default, or the given database URL) and creates two teams with a key each, in this
process with the code ``mpq db upgrade`` and ``mpq admin`` run (five CLI starts cost
~15 s per server; ``tests/commands/test_admin.py`` runs the commands themselves), then
starts uvicorn on a free port and waits for ``/healthz``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.db import Dataset, Model, create_api_key, create_team, make_engine, session_factory
from service.db.migrate import upgrade
from tests.conftest import Digits
from tests.service.conftest import require_redis, throwaway_postgres

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Server:
    """A running API server and what the tests need to talk to it and inspect it."""

    url: str
    data_dir: Path
    database_url: str
    key_a: str
    key_b: str
    process: subprocess.Popen[bytes]
    stack_name: str = "embedded"
    env: dict[str, str] = field(default_factory=dict)
    """The ``MPQ_*`` settings it was started with beyond the data directory and
    database (broker, queue, heartbeats...): a worker for it needs the same."""

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    def client(self, key: str | None) -> httpx.Client:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def rows(self) -> tuple[int, int]:
        """(models, datasets) rows in the database, counted directly."""
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                models = conn.scalar(select(func.count()).select_from(Model)) or 0
                datasets = conn.scalar(select(func.count()).select_from(Dataset)) or 0
        finally:
            engine.dispose()
        return models, datasets

    def files(self) -> set[str]:
        """Every file under the blob directory, relative to it."""
        if not self.blob_dir.exists():
            return set()
        return {str(p.relative_to(self.blob_dir)) for p in self.blob_dir.rglob("*") if p.is_file()}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def provision(database_url: str) -> list[str]:
    """Migrate ``database_url`` to head and create teams ``alpha`` and ``beta`` with a key
    each, as ``mpq db upgrade`` and ``mpq admin`` do; return the two keys' secrets."""
    upgrade(database_url)
    return team_keys(database_url, ("alpha", "beta"))


def team_keys(database_url: str, teams: Sequence[str], key_name: str = "default") -> list[str]:
    """Create each team with one key named ``key_name`` (what ``mpq admin create-team``
    and ``create-key`` do, in this process); return the keys' secrets in order."""
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            return [
                create_api_key(session, team=create_team(session, name=team), name=key_name)[1]
                for team in teams
            ]
    finally:
        engine.dispose()


def start_server(tmp: Path, *, database_url: str | None = None, **extra: str) -> Iterator[Server]:
    """Start a migrated server under ``tmp``; yield it; stop it."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    env |= {"MPQ_DATA_DIR": str(tmp), "PYTHONUNBUFFERED": "1", **extra}
    db_url = database_url or f"sqlite:///{tmp / 'mpq.db'}"
    env["MPQ_DATABASE_URL"] = db_url
    keys = provision(db_url)
    port = free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 -- closed after the server stops
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "service.main:app", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp / "server.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not come up in 60 s"
            time.sleep(0.2)
        yield Server(url, tmp, db_url, keys[0], keys[1], proc, env=dict(extra))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


STACKS = ["embedded", "postgres_redis"]
"""The two deployments: SQLite + the SQLite broker, and PostgreSQL + Redis."""


def start_stack(name: str, tmp: Path, **extra: str) -> Iterator[Server]:
    """Start a server on stack ``name`` (see :data:`STACKS`); yield it; stop it.

    ``postgres_redis`` gets a throwaway database and a queue of its own on the test
    Redis (other runs may share it), deleted afterwards.
    """
    if name == "embedded":
        yield from start_server(tmp, **extra)
        return
    queue = f"mpq-test-{uuid.uuid4().hex[:8]}"
    redis_url = require_redis()
    with throwaway_postgres() as url:
        for server in start_server(
            tmp, database_url=url, MPQ_BROKER_URL=redis_url, MPQ_QUEUE=queue, **extra
        ):
            yield replace(server, stack_name=name)
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(queue)
    client.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite-backed server shared by a test module."""
    yield from start_server(tmp_path_factory.mktemp("api"))


def upload_digits(c: httpx.Client, digits: Digits) -> tuple[int, int]:
    """Upload the digits model and its data; return (model id, dataset id)."""
    with open(digits.pt2, "rb") as f:
        r = c.post("/v1/models", files={"file": ("digits.pt2", f)}, data={"name": "digits"})
    assert r.status_code == 201, r.text
    model_id = r.json()["id"]
    with open(digits.npz, "rb") as f:
        r = c.post(
            "/v1/datasets",
            files={"file": ("digits.npz", f)},
            data={"name": "digits", "model_id": str(model_id)},
        )
    assert r.status_code == 201, r.text
    return model_id, int(r.json()["id"])
