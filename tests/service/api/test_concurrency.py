"""Many status clients at once: every request is answered, none waits on the connection pool.

The API runs a sync route's dependencies, the route and the check of its answer in
threadpool threads (40), over a pool of 15 database connections. A request that held a
connection while waiting for a thread, when every thread waited for a connection,
stalled them all until the pool's 30 s checkout timeout, then failed with 500s; the key
lookup and the job reads now hand their connection back before the next thread hop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from search import JobSpec
from service.db import ModelKind, make_engine, session_factory
from service.db.repos import create_dataset, create_job, create_model, find_team_by_key
from tests.service.api.conftest import Server, start_server

CLIENTS = 150


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(tmp_path_factory.mktemp("concurrency"))


def _a_job(server: Server) -> int:
    engine = make_engine(server.database_url)
    try:
        with session_factory(engine)() as session:
            team = find_team_by_key(session, server.key_a)
            assert team is not None
            model = create_model(
                session, team=team, name="m", kind=ModelKind.PT2, sha256="0" * 64,
                size_bytes=1, blob_path="models/m", inventory={},
            )  # fmt: skip
            dataset = create_dataset(
                session, team=team, name="d", sha256="1" * 64, size_bytes=1,
                blob_path="datasets/d", num_samples=1, inputs={},
            )  # fmt: skip
            job = create_job(session, team=team, model=model, dataset=dataset, spec=JobSpec())
            return job.id
    finally:
        engine.dispose()


async def _burst(server: Server, paths: list[str]) -> list[int]:
    headers = {"Authorization": f"Bearer {server.key_a}"}
    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=120, limits=limits
    ) as c:
        answers = await asyncio.gather(*(c.get(path) for path in paths))
    return [r.status_code for r in answers]


def test_a_burst_of_status_reads_is_answered_without_a_pool_stall(server: Server) -> None:
    job_id = _a_job(server)
    paths = [f"/v1/jobs/{job_id}" if i % 3 else "/v1/jobs" for i in range(CLIENTS)]
    start = time.monotonic()
    statuses = asyncio.run(_burst(server, paths))
    took = time.monotonic() - start
    assert statuses == [200] * CLIENTS
    assert took < 20, f"{CLIENTS} requests took {took:.1f} s: a pool checkout waited"
