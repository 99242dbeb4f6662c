"""End to end over real processes: uvicorn + a Celery worker, on both stacks.

``embedded``: SQLite database and the SQLite broker, no server. ``postgres_redis``:
PostgreSQL and Redis, as in production. On each: upload the digits model and data, run
a job (two trial runners) to success, download ``model.mpq``, evaluate it here, and
compare with what the API reported (metric and bytes exactly); then every route of the
API, called with another team's key, answers 404 for this team's rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import evaluate_file
from engine.io import load_artifact
from tests.conftest import Digits
from tests.service.api.conftest import STACKS, Server, start_stack
from tests.workers.conftest import (
    FINAL,
    job_body,
    start_worker,
    upload_digits,
    wait_for,
)

DONE: dict[str, dict[str, Any]] = {}  # per stack: ids of the succeeded job's rows


@pytest.fixture(scope="module", params=STACKS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """An API server and a two-process worker on a fresh data directory and database."""
    for server in start_stack(request.param, tmp_path_factory.mktemp(request.param)):
        with start_worker(server, concurrency=2):
            yield server


def test_job_runs_to_success_and_its_artifact_matches(
    stack: Server, digits: Digits, tmp_path: Path
) -> None:
    job = _run_and_check(stack, digits, tmp_path)
    # Both runners ran (whether the second got trials depends on how fast the first went).
    log = (stack.data_dir / "worker-w1.log").read_text()
    done = re.findall(r"Task (mpq\.\w+)\[[-\w]+\] succeeded", log)
    assert sorted(done) == ["mpq.finalize", "mpq.run_job", "mpq.run_trials", "mpq.run_trials"]
    assert {t["runner"] for t in job["trials"]} <= {0, 1}
    DONE[stack.stack_name] = job


def _assert_no_server_paths(doc: Any, stack: Server) -> None:
    """No string of ``doc`` (keys too) starts with '/' or names the data directory."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            _assert_no_server_paths(key, stack)
            _assert_no_server_paths(value, stack)
    elif isinstance(doc, list):
        for value in doc:
            _assert_no_server_paths(value, stack)
    elif isinstance(doc, str):
        assert not doc.startswith("/") and str(stack.data_dir) not in doc, doc
        assert "/tmp/" not in doc and "blobs/" not in doc, doc


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
        assert chosen is not None and job["result"]["met_on_search"] is True
        assert chosen["metric"] >= job["baseline"]["metric"] - 0.01
        # judged on the held-out quarter: its figure, interval and floor, as result.json has
        held, floor = chosen["heldout"], job["result"]["targets"]["heldout_metric_floor"]
        assert held["samples"] == job["baseline"]["heldout"]["samples"] == 135
        assert held["ci"][0] <= held["metric"] <= held["ci"][1]
        assert floor == pytest.approx(job["baseline"]["heldout"]["metric"] - 0.01)
        assert job["result"]["met_targets"] is (held["metric"] >= floor)

        trials = c.get(f"/v1/jobs/{job['id']}/trials").json()
        assert trials["count"] == 16 and len(trials["data"]) == 16
        assert trials["front"]

        listed = c.get(f"/v1/jobs/{job['id']}/artifacts").json()
        names = {a["name"]: a for a in listed["data"]}
        assert {"model.mpq", "model.onnx", "result.json"} <= set(names)
        r = c.get(f"/v1/jobs/{job['id']}/artifacts/model.mpq")
        assert r.status_code == 200
        digest = hashlib.sha256(r.content).hexdigest()
        assert digest == names["model.mpq"]["sha256"]
        assert r.headers["etag"] == f'"{digest}"'
        assert int(r.headers["content-length"]) == len(r.content) == chosen["file_bytes"]
        path = tmp_path / "model.mpq"
        path.write_bytes(r.content)
        # No server path in what the user sees: the job, its trials and result.json.
        result_json = c.get(f"/v1/jobs/{job['id']}/artifacts/result.json").json()
        for doc in (job, trials, result_json):
            _assert_no_server_paths(doc, stack)
        config = result_json["config"]
        assert config["model"] == f"model {model_id} ('digits' v1)"
        assert config["data"] == f"dataset {dataset_id} ('digits')"
        assert job["result"]["config"] == config

    # What `mpq eval model.mpq --data digits.npz` measures: the artifact file alone.
    report = evaluate_file(path, digits.npz, metric="accuracy")
    assert report.value == chosen["evaluation_metric"]
    assert load_artifact(path).payload_bytes == chosen["payload_bytes"]
    return job | {"trials": trials["data"]}


@pytest.mark.parametrize("kind", ["pt2", "onnx"])
def test_dynamic_batch_exports_run_a_job_and_evaluate_as_reported(
    stack: Server, digits: Digits, kind: str, tmp_path: Path
) -> None:
    source = digits.pt2_dynamic if kind == "pt2" else digits.onnx_dynamic
    with stack.client(stack.key_a) as c:
        with open(source, "rb") as f:
            r = c.post("/v1/models", files={"file": (source.name, f)}, data={"name": source.stem})
        assert r.status_code == 201, r.text
        model = r.json()
        assert model["inventory"]["fixed_batch"] is None  # runs at any batch
        assert model["inventory"]["total_macs"] > 0
        with open(digits.npz, "rb") as f:
            r = c.post(
                "/v1/datasets",
                files={"file": ("digits.npz", f)},
                data={"name": "digits", "model_id": str(model["id"])},
            )
        assert r.status_code == 201, r.text
        assert r.json()["num_samples"] == 540 + 256  # evaluation + calib/ samples
        r = c.post("/v1/jobs", json=job_body(model["id"], r.json()["id"]))
        assert r.status_code == 202, r.text
        job = wait_for(stack, c, r.json()["id"], lambda j: j["status"] in FINAL)
        assert job["status"] == "succeeded", job
        r = c.get(f"/v1/jobs/{job['id']}/artifacts/model.mpq")
        assert r.status_code == 200
        path = tmp_path / "model.mpq"
        path.write_bytes(r.content)
    chosen = job["chosen"]
    assert evaluate_file(path, digits.npz, metric="accuracy").value == chosen["evaluation_metric"]
    assert load_artifact(path).payload_bytes == chosen["payload_bytes"]


# Where a route's path parameters come from: team A's rows (the succeeded job's).
_PARAMS = {"model_id": "model_id", "dataset_id": "dataset_id", "job_id": "id"}
_PARAMS |= {"webhook_id": "webhook_id", "schedule_id": "schedule_id"}
_OPEN = {"/healthz", "/readyz", "/metrics"}


def test_every_route_hides_one_teams_rows_from_another(stack: Server) -> None:
    job = DONE.get(stack.stack_name)
    if job is None:
        pytest.fail("the job of test_job_runs_to_success... did not succeed")
    ids = {"model_id": job["model_id"], "dataset_id": job["dataset_id"], "id": job["id"]}
    with stack.client(stack.key_a) as a, stack.client(stack.key_b) as b:
        hook = a.post(
            "/v1/webhooks", json={"url": "https://ci.example/h", "events": ["job.failed"]}
        )
        ids["webhook_id"] = hook.json()["id"]
        model = a.get(f"/v1/models/{ids['model_id']}").json()
        version = {"version": model["version"]}
        r = a.put(f"/v1/models/{model['name']}/aliases/production", json=version)
        assert r.status_code == 200, r.text
        schedule = a.post("/v1/schedules", json=_schedule_body(model["name"], ids["dataset_id"]))
        assert schedule.status_code == 201, schedule.text
        ids["schedule_id"] = schedule.json()["id"]
        ids["model_name"] = model["name"]
        routes = a.get("/openapi.json").json()["paths"]
        covered = set()
        for path, methods in routes.items():
            if path in _OPEN:
                continue
            for method in methods:
                covered.add((method, path))
                _check_route(a, b, method, path, ids)
    # Every route of the API was called: a new route cannot skip this matrix.
    assert {(m, p) for p, ms in routes.items() if p not in _OPEN for m in ms} == covered
    assert len(covered) >= 12


def _schedule_body(model: str, dataset_id: int) -> dict[str, object]:
    job = {k: v for k, v in job_body(0, 0).items() if k not in ("model_id", "dataset_id")}
    return {
        "name": "yearly",
        "cron": "0 3 1 1 *",
        "model": {"name": model, "alias": "production"},
        "dataset_id": dataset_id,
        "job": job,
    }


def _check_route(
    a: httpx.Client, b: httpx.Client, method: str, path: str, ids: dict[str, Any]
) -> None:
    name = str(ids["model_name"]) if path.startswith("/v1/models/{name}") else "model.mpq"
    url = path.replace("{name}", name).replace("{alias}", "production")
    for param, key in _PARAMS.items():
        url = url.replace("{" + param + "}", str(ids[key]))
    assert "{" not in url, f"no value for a parameter of {path}"
    where = f"{method.upper()} {path}"
    if method == "get" and "{" not in path:  # a listing: B sees none of A's rows
        assert a.get(url).json()["count"] >= 1, where
        assert b.get(url).json()["count"] == 0, where
    elif method == "get":
        assert a.get(url).status_code == 200, where
        r = b.get(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", where
    elif path == "/v1/jobs/{job_id}/cancel":
        r = b.post(url)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", where
        assert a.post(url).json()["error"]["code"] == "conflict", where  # A: it succeeded
    elif path == "/v1/jobs":  # B cannot run a search on A's model or data
        body = job_body(ids["model_id"], ids["dataset_id"])
        r = b.post(url, json=body)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", where
    elif path == "/v1/datasets":  # nor validate data against (and so probe) A's model
        files = {"file": ("d.npz", b"PK\x05\x06" + bytes(18))}
        r = b.post(url, files=files, data={"name": "probe", "model_id": str(ids["model_id"])})
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", where
    elif path in ("/v1/models", "/v1/webhooks"):  # they refer to no existing row; B's go to B
        pass
    elif path == "/v1/schedules":  # B cannot schedule A's model and data
        r = b.post(url, json=_schedule_body(str(ids["model_name"]), ids["dataset_id"]))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", where
    elif path == "/v1/models/{name}/aliases/{alias}":  # B can neither move nor drop A's alias
        r = b.request(method.upper(), url, json={"version": 1} if method == "put" else None)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", where
        versions = a.get(f"/v1/models/{ids['model_name']}/versions").json()["data"]
        mine = [v["aliases"] for v in versions if v["id"] == ids["model_id"]]
        assert mine == [["production"]], where
    elif path in ("/v1/schedules/{schedule_id}", "/v1/webhooks/{webhook_id}"):
        # B can neither change nor delete A's
        r = b.request(method.upper(), url, json={"enabled": False} if method == "patch" else None)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", where
        assert a.get(url).json()["enabled"] is True, where
    else:
        pytest.fail(f"{where}: add this route to the isolation matrix")
