"""End to end on the embedded default: uvicorn + a real Celery worker, SQLite + SQLite broker.

Upload the digits model and data, run a job to success, download ``model.mpq``,
evaluate it here, and compare with what the API reported: metric and bytes exactly.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.artifact import load_artifact
from engine.pipeline import evaluate_file
from tests.conftest import Digits
from tests.service.api.conftest import Server, start_server
from tests.workers.conftest import FINAL, job_body, start_worker, upload_digits, wait_for


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An API server and one worker on a fresh data directory."""
    for server in start_server(tmp_path_factory.mktemp("jobs")):
        with start_worker(server):
            yield server


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
        with start_worker(server, concurrency=2, **extra):
            job = _run_and_check(server, digits, tmp_path)
    # Both runners ran (whether the second got trials depends on how fast the first went).
    log = (server.data_dir / "worker-w1.log").read_text()
    done = re.findall(r"Task (mpq\.\w+)\[[-\w]+\] succeeded", log)
    assert sorted(done) == ["mpq.finalize", "mpq.run_job", "mpq.run_trials", "mpq.run_trials"]
    assert {t["runner"] for t in job["trials"]} <= {0, 1}


def _run_and_check(stack: Server, digits: Digits, tmp_path: Path) -> dict[str, Any]:
    with stack.client(stack.key_a) as c:
        model_id, dataset_id = upload_digits(c, digits)
        r = c.post("/v1/jobs", json=job_body(model_id, dataset_id, parallelism=2))
        assert r.status_code == 202, r.text
        queued = r.json()
        assert queued["status"] in ("queued", "running")
        assert queued["trials_total"] == 16
        job = wait_for(stack, c, queued["id"], lambda j: j["status"] in FINAL)
        assert job["status"] == "succeeded", job
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
    return job | {"trials": trials["data"]}


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
