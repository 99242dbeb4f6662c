"""A warm-started job over real processes (uvicorn + a Celery worker, embedded stack).

Two jobs on the digits model: the first runs cold; the second, its
``warm_start_job_id`` set to the first (as beat sets it for a scheduled job), starts from
the first's chosen plan -- its first trial -- and reuses every layer's sensitivity. A
third points at a job that has not succeeded (itself) and runs cold without failing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from service.db import Job, make_engine
from tests.conftest import Digits
from tests.service.api.conftest import Server, start_stack
from tests.workers.conftest import FINAL, job_body, start_worker, upload_digits, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_stack("embedded", tmp_path_factory.mktemp("warm"))


def _set_warm_start(server: Server, job_id: int, earlier: int) -> None:
    engine = make_engine(server.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(update(Job).where(Job.id == job_id).values(warm_start_job_id=earlier))
    finally:
        engine.dispose()


def _run(server: Server, body: dict[str, Any], name: str, earlier: int | None) -> dict[str, Any]:
    """Submit ``body`` with no worker up, set its warm start, then run a worker to the end.

    ``earlier`` 0: the job itself (not succeeded, so unusable).
    """
    with server.client(server.key_a) as c:
        r = c.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        if earlier is not None:
            _set_warm_start(server, job_id, earlier or job_id)
        with start_worker(server, name):
            job = wait_for(server, c, job_id, lambda j: j["status"] in FINAL, logs=(name,))
        assert job["status"] == "succeeded", job
        job["trials"] = c.get(f"/v1/jobs/{job_id}/trials").json()["data"]
        return job


def test_the_second_job_starts_from_the_first_ones_chosen_plan(
    stack: Server, digits: Digits, tmp_path: Path
) -> None:
    with stack.client(stack.key_a) as c:
        model_id, dataset_id = upload_digits(c, digits)
    body = job_body(model_id, dataset_id)
    cold = _run(stack, body, "w1", None)
    assert "warm_start" not in cold["result"]
    warm = _run(stack, body, "w2", cold["id"])
    info = warm["result"]["warm_start"]
    assert info["from_job"] == cold["id"]
    assert info["layers_reused"] == 4 and info["layers_measured"] == 0
    assert 1 <= info["seeded_plans"] <= 8
    chosen = next(t for t in cold["trials"] if t["number"] == cold["chosen"]["trial"])
    first = min(warm["trials"], key=lambda t: t["number"])
    assert first["plan"] == chosen["plan"]
    assert first["source"] == f"warm:{cold['id']}"
    assert first["feasible"]
    # an unusable earlier job (not succeeded): cold, and no failure
    again = _run(stack, body, "w3", 0)
    assert "warm_start" not in again["result"]
