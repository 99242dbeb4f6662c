"""``/v1/jobs`` without a worker: submission, validation, cancellation, isolation.

The server is real (uvicorn; SQLite + the SQLite broker, then PostgreSQL + Redis); with
no worker running, submitted jobs stay queued, which is what these tests need.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from search import JobSpec
from service.db import Job, JobStatus, make_engine, session_factory
from service.db.repos import claim_job, record_step
from service.progress import progress_doc
from tests.conftest import Digits
from tests.service.api.conftest import STACKS, Server, start_stack, upload_digits


@pytest.fixture(scope="module", params=STACKS)
def jobs_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server with no worker, on each stack (jobs sent to the broker stay queued)."""
    yield from start_stack(request.param, tmp_path_factory.mktemp(f"jobs-{request.param}"))


@pytest.fixture(scope="module")
def ids(jobs_server: Server, digits: Digits) -> tuple[int, int]:
    with jobs_server.client(jobs_server.key_a) as c:
        return upload_digits(c, digits)


def _body(ids: tuple[int, int], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_id": ids[0],
        "dataset_id": ids[1],
        "metric": "accuracy",
        "targets": {"max_drop": 0.01},
        "space": ["int4", "int8"],
        "budget": {"trials": 4},
    }
    return body | over


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def _jobs(server: Server) -> int:
    engine = make_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Job)) or 0
    finally:
        engine.dispose()


def test_submit_answers_202_queued_and_cancel_is_idempotent(
    jobs_server: Server, ids: tuple[int, int]
) -> None:
    with jobs_server.client(jobs_server.key_a) as c:
        r = c.post("/v1/jobs", json=_body(ids, parallelism=99))
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] == "queued" and job["trials_done"] == 0
        assert job["trials_total"] == 4 and job["chosen"] is None
        assert job["config"]["parallelism"] == 4  # capped by max_parallelism
        assert job["created_by"]["prefix"] == jobs_server.key_a[:12]  # who submitted it
        assert job["heartbeat_at"] is None  # no worker has touched it
        assert job["phase"] is None and job["progress"] is None
        assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
        assert c.get(f"/v1/jobs/{job['id']}/trials").json() == {"data": [], "count": 0, "front": []}
        assert c.get(f"/v1/jobs/{job['id']}/artifacts").json() == {"data": [], "count": 0}
        _error(c.get(f"/v1/jobs/{job['id']}/artifacts/model.mpq"), 404, "not_found")
        listed = c.get("/v1/jobs", params={"status": "queued"}).json()
        assert job["id"] in [j["id"] for j in listed["data"]]
        for _ in range(2):
            r = c.post(f"/v1/jobs/{job['id']}/cancel")
            assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert c.get("/v1/jobs", params={"status": "queued", "limit": 1}).json()["data"] == []
    with jobs_server.client(jobs_server.key_b) as b:
        _error(b.get(f"/v1/jobs/{job['id']}"), 404, "not_found")
        _error(b.post(f"/v1/jobs/{job['id']}/cancel"), 404, "not_found")
        _error(b.post("/v1/jobs", json=_body(ids)), 404, "not_found")


def test_a_preparing_job_shows_its_step_in_the_list_and_can_be_cancelled(
    jobs_server: Server, ids: tuple[int, int]
) -> None:
    with jobs_server.client(jobs_server.key_a) as c:
        job_id = c.post("/v1/jobs", json=_body(ids)).json()["id"]
        # What a worker's prepare writes (its claim, then a step), without the worker.
        engine = make_engine(jobs_server.database_url)
        try:
            with session_factory(engine)() as session:
                assert claim_job(session, job_id=job_id, progress=progress_doc("preparing"))
                step = progress_doc("preparing", step="sensitivity", done=12, total=50)
                assert record_step(session, job_id=job_id, progress=step) == JobStatus.PREPARING
        finally:
            engine.dispose()
        job = c.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "preparing" and job["phase"] == "preparing"
        assert job["heartbeat_at"] is not None and job["started_at"] is None
        got = job["progress"]
        assert (got["step"], got["done"], got["total"], got["eta_s"]) == (
            "sensitivity",
            12,
            50,
            None,
        )
        assert got["updated_at"].startswith(step["updated_at"][:19])
        listed = c.get("/v1/jobs", params={"status": "preparing"}).json()
        assert [j["id"] for j in listed["data"]] == [job_id] and listed["count"] == 1
        assert listed["data"][0]["progress"] == got
        r = c.post(f"/v1/jobs/{job_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        # Ended: no phase any more; the progress says where it was.
        assert r.json()["phase"] is None and r.json()["progress"]["step"] == "sensitivity"


def test_the_body_is_a_job_spec_and_the_job_stores_it_as_is(
    jobs_server: Server, ids: tuple[int, int]
) -> None:
    spec = {
        "targets": {"max_bytes": "8KB"},
        "rounding": ["nearest"],
        "activation": ["a8", "a16"],
        "pins": {"fc*": "int8", "conv1": "int4"},
        "sampler": "random",
        "seed": 3,
    }
    with jobs_server.client(jobs_server.key_a) as c:
        r = c.post("/v1/jobs", json=_body(ids, **spec))
        assert r.status_code == 202, r.text
        job = r.json()
        body = {k: v for k, v in _body(ids, **spec).items() if k not in ("model_id", "dataset_id")}
        assert job["config"] == JobSpec.from_json(body).to_json()
        assert job["config"]["targets"]["max_bytes"] == 8000
        assert list(job["config"]["pins"]) == ["fc*", "conv1"]  # in order: the first match wins
        assert c.get(f"/v1/jobs/{job['id']}").json()["config"] == job["config"]
        assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("over", "status", "code"),
    [
        ({"targets": {"max_drop": -0.1}}, 422, "invalid_plan"),
        ({"targets": {"max_drop": 0.01, "min_metric": 0.9}}, 422, "invalid_plan"),
        ({"targets": {"max_bytes": 10, "min_ratio": 4}}, 422, "invalid_plan"),
        ({"targets": {"max_bytes": 0}}, 422, "invalid_plan"),
        ({"targets": {"max_drop": 0.01, "bogus": 1}}, 422, "invalid_request"),
        ({"budget": {"trials": 0}}, 422, "invalid_plan"),
        ({"parallelism": 0}, 422, "invalid_plan"),
        ({"metric": "bleu"}, 422, "invalid_plan"),
        ({"metric": "sqnr"}, 422, "invalid_plan"),
        ({"metric": "kl"}, 422, "invalid_plan"),  # max_drop on a lower-is-better metric
        ({"metric": "nmse", "targets": {"min_metric": 0.1}}, 422, "invalid_plan"),
        ({"metric": "kl", "targets": {"max_drop_rel": 0.1}}, 422, "invalid_plan"),
        ({"targets": {"max_metric": 0.01}}, 422, "invalid_plan"),  # accuracy: higher is better
        ({"metric": "kl", "targets": {"max_metric": 0.01, "max_drop": 0.1}}, 422, "invalid_plan"),
        ({"metric": "kl", "targets": {"max_metric": "low"}}, 422, "invalid_request"),
        ({"space": ["int5x"]}, 422, "invalid_plan"),
        ({"space": []}, 422, "invalid_plan"),
        ({"model_id": 10_000}, 404, "not_found"),
        ({"dataset_id": 10_000}, 404, "not_found"),
        ({"model_id": "x"}, 422, "invalid_request"),
        ({"sampler": "annealing"}, 422, "invalid_plan"),
        ({"rounding": ["floor"]}, 422, "invalid_plan"),
        ({"activation": ["a3x"]}, 422, "invalid_plan"),
        ({"pins": {"fc*": "int5x"}}, 422, "invalid_plan"),
        ({"pins": {"fc*": 8}}, 422, "invalid_request"),
        ({"targets": {"max_bytes": "8 parsecs"}}, 422, "invalid_plan"),
        ({"budget": {"trials": 10_001}}, 422, "invalid_plan"),
    ],
)
def test_bad_jobs_answer_4xx_and_leave_no_row(
    jobs_server: Server, ids: tuple[int, int], over: dict[str, Any], status: int, code: str
) -> None:
    before = _jobs(jobs_server)
    with jobs_server.client(jobs_server.key_a) as c:
        _error(c.post("/v1/jobs", json=_body(ids, **over)), status, code)
    assert _jobs(jobs_server) == before


@pytest.mark.parametrize(
    ("metric", "targets"),
    [
        ("kl", {"max_metric": 0.01, "max_bytes": "8KB"}),
        ("nmse", {"max_metric": 0.05}),
        ("top5", {"max_drop": 0.01}),
        ("top5", {"min_metric": 0.99}),
    ],
)
def test_new_metrics_and_their_targets_are_accepted(
    jobs_server: Server, ids: tuple[int, int], metric: str, targets: dict[str, Any]
) -> None:
    with jobs_server.client(jobs_server.key_a) as c:
        r = c.post("/v1/jobs", json=_body(ids, metric=metric, targets=targets))
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["config"]["metric"] == metric
        stored = {k: v for k, v in job["config"]["targets"].items() if v is not None}
        assert stored == {k: 8000 if k == "max_bytes" else v for k, v in targets.items()}
        assert c.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"


def test_the_wrong_way_target_says_what_to_give(jobs_server: Server, ids: tuple[int, int]) -> None:
    with jobs_server.client(jobs_server.key_a) as c:
        r = c.post("/v1/jobs", json=_body(ids, metric="kl", targets={"min_metric": 0.01}))
        _error(r, 422, "invalid_plan")
        message = r.json()["error"]["message"]
        assert "kl is lower-is-better" in message and "targets.max_metric" in message
        r = c.post("/v1/jobs", json=_body(ids, targets={"max_metric": 0.01}))
        _error(r, 422, "invalid_plan")
        assert "accuracy is higher-is-better" in r.json()["error"]["message"]


def test_unknown_job_ids_and_bad_json(jobs_server: Server) -> None:
    with jobs_server.client(jobs_server.key_a) as c:
        for path in ("/v1/jobs/999", "/v1/jobs/999/trials", "/v1/jobs/999/artifacts"):
            _error(c.get(path), 404, "not_found")
        _error(c.post("/v1/jobs/999/cancel"), 404, "not_found")
        r = c.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"})
        _error(r, 422, "invalid_request")
        _error(c.get("/v1/jobs", params={"status": "sleeping"}), 422, "invalid_request")
    with jobs_server.client(None) as anonymous:
        _error(anonymous.get("/v1/jobs"), 401, "unauthorized")


def test_a_label_metric_on_a_dataset_without_labels_is_refused_at_submission(
    jobs_server: Server, ids: tuple[int, int], digits: Digits, tmp_path: Path
) -> None:
    z = np.load(digits.npz)
    path = tmp_path / "nolabels.npz"
    np.savez(path, **{k: z[k] for k in z.files if k != "labels"})
    with jobs_server.client(jobs_server.key_a) as c, open(path, "rb") as f:
        r = c.post(
            "/v1/datasets",
            files={"file": ("nolabels.npz", f)},
            data={"name": "nolabels", "model_id": str(ids[0])},
        )
        assert r.status_code == 201, r.text
        unlabelled = (ids[0], int(r.json()["id"]))
        before = _jobs(jobs_server)
        r = c.post("/v1/jobs", json=_body(unlabelled))  # accuracy
        _error(r, 422, "metric_not_applicable")
        assert "'labels'" in r.json()["error"]["message"]
        assert _jobs(jobs_server) == before
        r = c.post("/v1/jobs", json=_body(unlabelled, metric="agreement"))
        assert r.status_code == 202, r.text
        assert c.post(f"/v1/jobs/{r.json()['id']}/cancel").json()["status"] == "cancelled"
