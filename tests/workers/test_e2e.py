"""End to end on the embedded default: uvicorn + a real Celery worker, SQLite + SQLite broker.

Upload the digits model and data, run a job to success, download ``model.mpq``,
evaluate it here, and compare with what the API reported: metric and bytes exactly.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.artifact import load_artifact
from engine.pipeline import evaluate_file
from tests.conftest import Digits
from tests.service.api.conftest import Server, start_server
from tests.workers.conftest import start_worker, worker_log

JOB_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An API server and one worker on a fresh data directory."""
    for server in start_server(tmp_path_factory.mktemp("jobs")):
        with start_worker(server):
            yield server


def _upload(c: httpx.Client, digits: Digits) -> tuple[int, int]:
    with open(digits.pt2, "rb") as f:
        r = c.post("/v1/models", files={"file": ("digits.pt2", f)}, data={"name": "digits"})
    assert r.status_code == 201, r.text
    model_id = r.json()["id"]
    with open(digits.npz, "rb") as f:
        r = c.post(
            "/v1/datasets", files={"file": ("digits.npz", f)},
            data={"name": "digits", "model_id": str(model_id)},
        )  # fmt: skip
    assert r.status_code == 201, r.text
    return model_id, r.json()["id"]


def _job(model_id: int, dataset_id: int, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_id": model_id, "dataset_id": dataset_id, "metric": "accuracy",
        "targets": {"max_drop": 0.01}, "space": ["int2", "int3", "int4", "int8", "cb16"],
        "budget": {"trials": 16}, "seed": 0, "parallelism": 1,
    }  # fmt: skip
    return body | over


def _wait(server: Server, c: httpx.Client, job_id: int, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["status"] in states:
            return job
        assert time.monotonic() < deadline, f"job stuck in {job['status']}:\n{worker_log(server)}"
        time.sleep(0.5)


def test_job_runs_to_success_and_its_artifact_matches(
    stack: Server, digits: Digits, tmp_path: Path
) -> None:
    _run_and_check(stack, digits, tmp_path)


def test_job_on_postgres_and_redis(
    postgres_url: str, redis_url: str, digits: Digits, tmp_path: Path
) -> None:
    # A queue of its own: other test runs may share this Redis server.
    extra = {"MPQ_BROKER_URL": redis_url, "MPQ_QUEUE": f"mpq-test-{uuid.uuid4().hex[:8]}"}
    for server in start_server(tmp_path / "data", database_url=postgres_url, **extra):
        with start_worker(server, **extra):
            _run_and_check(server, digits, tmp_path)


def _run_and_check(stack: Server, digits: Digits, tmp_path: Path) -> None:
    with stack.client(stack.key_a) as c:
        model_id, dataset_id = _upload(c, digits)
        r = c.post("/v1/jobs", json=_job(model_id, dataset_id))
        assert r.status_code == 202, r.text
        queued = r.json()
        assert queued["status"] in ("queued", "running")
        assert queued["trials_total"] == 16
        job = _wait(stack, c, queued["id"], {"succeeded", "failed", "cancelled"})
        assert job["status"] == "succeeded", (job, worker_log(stack))
        assert job["trials_done"] == 16
        assert job["baseline"]["metric"] > 0.9
        chosen = job["chosen"]
        assert chosen is not None and job["result"]["met_targets"] is True
        assert chosen["metric"] >= job["baseline"]["metric"] - 0.01

        trials = c.get(f"/v1/jobs/{job['id']}/trials").json()
        assert trials["count"] == 16 and len(trials["data"]) == 16
        assert trials["front"]

        listed = c.get(f"/v1/jobs/{job['id']}/artifacts").json()
        names = {a["name"]: a for a in listed["data"]}
        assert {"model.mpq", "result.json"} <= set(names)
        r = c.get(f"/v1/jobs/{job['id']}/artifacts/model.mpq")
        assert r.status_code == 200
        digest = hashlib.sha256(r.content).hexdigest()
        assert digest == names["model.mpq"]["sha256"]
        assert r.headers["etag"] == f'"{digest}"'
        assert int(r.headers["content-length"]) == len(r.content) == chosen["file_bytes"]
        path = tmp_path / "model.mpq"
        path.write_bytes(r.content)

    # What `mpq eval model.mpq --data digits.npz` measures: the artifact file alone.
    report = evaluate_file(path, digits.npz, metric="accuracy")
    assert report.value == chosen["metric"]
    assert load_artifact(path).payload_bytes == chosen["payload_bytes"]


def test_job_listing_filters_and_other_teams_see_404(stack: Server) -> None:
    with stack.client(stack.key_a) as a, stack.client(stack.key_b) as b:
        jobs = a.get("/v1/jobs", params={"status": "succeeded"}).json()
        assert jobs["count"] >= 1
        job_id = jobs["data"][0]["id"]
        for path in ("", "/trials", "/artifacts", "/artifacts/model.mpq"):
            r = b.get(f"/v1/jobs/{job_id}{path}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = b.post(f"/v1/jobs/{job_id}/cancel")
        assert r.status_code == 404
        assert b.get("/v1/jobs").json()["count"] == 0
        r = a.post(f"/v1/jobs/{job_id}/cancel")
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
