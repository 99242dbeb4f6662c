"""Everything a client sends is validated before 202; no 500 from ordinary bad input; quotas.

A real server (uvicorn, SQLite + the SQLite broker, no worker: accepted jobs stay
queued) with small quotas: 3 active jobs per team, and team storage just above what
team alpha uploads here (the digits model twice, its data, a small linear model and its
data). Each bad request answers an exact 4xx and code, and leaves no job row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from sqlalchemy import func, select

from service.db import Job, make_engine
from tests.conftest import Digits
from tests.service.api.conftest import Server, start_server, upload_digits

MAX_ACTIVE = 3
BIG_IDS = (2**63, 2**64, 10**30)


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 3-class linear model on 4 features (.pt2) and 40 labelled samples: other inputs."""
    tmp = tmp_path_factory.mktemp("linear")
    torch.manual_seed(0)
    program = torch.export.export(torch.nn.Linear(4, 3).eval(), (torch.randn(8, 4),))
    torch.export.save(program, tmp / "linear.pt2")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    np.savez(tmp / "linear.npz", x=x, labels=rng.integers(0, 3, 40))
    return tmp / "linear.pt2", tmp / "linear.npz"


@pytest.fixture(scope="module")
def quota(digits: Digits, linear: tuple[Path, Path]) -> int:
    """Team storage quota: what alpha uploads here, plus 1 KB."""
    sizes = [digits.pt2, digits.pt2, digits.npz, *linear]
    return sum(p.stat().st_size for p in sizes) + 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, quota: int) -> Iterator[Server]:
    yield from start_server(
        tmp_path_factory.mktemp("validation"),
        MPQ_MAX_ACTIVE_JOBS_PER_TEAM=str(MAX_ACTIVE),
        MPQ_MAX_TEAM_STORAGE_BYTES=str(quota),
        MPQ_MAX_TRIALS="500",
    )


@pytest.fixture(scope="module")
def ids(server: Server, digits: Digits) -> tuple[int, int]:
    with server.client(server.key_a) as c:
        return upload_digits(c, digits)


@pytest.fixture(scope="module")
def others(server: Server, ids: tuple[int, int], digits: Digits, linear: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    """(digits v2 id, linear model id, linear dataset id)."""
    with server.client(server.key_a) as c:
        with open(digits.pt2, "rb") as f:
            r = c.post("/v1/models", files={"file": ("digits.pt2", f)}, data={"name": "digits"})
        assert r.status_code == 201, r.text
        v2 = r.json()["id"]
        with open(linear[0], "rb") as f:
            r = c.post("/v1/models", files={"file": ("lin.pt2", f)}, data={"name": "linear"})
        assert r.status_code == 201, r.text
        lin = r.json()["id"]
        with open(linear[1], "rb") as f:
            r = c.post(
                "/v1/datasets",
                files={"file": ("lin.npz", f)},
                data={"name": "linear", "model_id": str(lin)},
            )
        assert r.status_code == 201, r.text
        return v2, lin, r.json()["id"]


def _body(ids: tuple[int, int], **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model_id": ids[0],
        "dataset_id": ids[1],
        "targets": {"max_drop": 0.01},
        "space": ["int4", "int8"],
        "budget": {"trials": 4},
    }
    return body | over


def _jobs(server: Server) -> int:
    engine = make_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(Job)) or 0
    finally:
        engine.dispose()


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text
    message: str = r.json()["error"]["message"]
    assert "Traceback" not in message and "/tmp" not in message
    return message


def _cancel_all(c: httpx.Client) -> None:
    for job in c.get("/v1/jobs", params={"limit": 100}).json()["data"]:
        if job["status"] in ("queued", "preparing", "running"):
            assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


@pytest.mark.parametrize("big", BIG_IDS)
def test_ids_past_bigint_are_refused_on_every_route(server: Server, big: int) -> None:
    with server.client(server.key_a) as c:
        for path in (
            f"/v1/models/{big}",
            f"/v1/datasets/{big}",
            f"/v1/jobs/{big}",
            f"/v1/jobs/{big}/trials",
            f"/v1/jobs/{big}/artifacts",
            f"/v1/jobs/{big}/artifacts/result.json",
        ):
            message = _error(c.get(path), 422, "invalid_request")
            assert "job_id" in message or "model_id" in message or "dataset_id" in message
        _error(c.post(f"/v1/jobs/{big}/cancel"), 422, "invalid_request")
        for listing in ("/v1/models", "/v1/datasets", "/v1/jobs"):
            _error(c.get(listing, params={"skip": big}), 422, "invalid_request")
            _error(c.get(listing, params={"skip": -1}), 422, "invalid_request")
        for field in ("model_id", "dataset_id"):
            r = c.post("/v1/jobs", json=_body((1, 1), **{field: big}))
            assert field in _error(r, 422, "invalid_request")


def test_the_largest_id_is_a_plain_miss(server: Server) -> None:
    with server.client(server.key_a) as c:
        for path in ("/v1/models", "/v1/datasets", "/v1/jobs"):
            _error(c.get(f"{path}/{2**63 - 1}"), 404, "not_found")
            r = c.get(path, params={"skip": 2**63 - 1})
            assert r.status_code == 200 and r.json()["data"] == [], r.text
        _error(c.get("/v1/jobs/0"), 422, "invalid_request")


BAD_JOBS: list[tuple[dict[str, Any], str, str]] = [
    ({"model_id": True}, "invalid_request", "model_id"),
    ({"dataset_id": "1"}, "invalid_request", "dataset_id"),
    ({"seed": True}, "invalid_request", "seed"),
    ({"seed": 2**64}, "invalid_plan", "`seed` must be between 0 and 4294967295"),
    ({"seed": 2**32}, "invalid_plan", "`seed`"),
    ({"seed": -1}, "invalid_plan", "`seed`"),
    ({"budget": {"trials": 10**12}}, "invalid_plan", "`budget.trials`"),
    ({"budget": {"trials": 501}}, "invalid_plan", "at most 500"),
    ({"budget": {"trials": 4.0}}, "invalid_request", "budget.trials"),
    ({"budget": {"timeout_s": 1e300}}, "invalid_plan", "`budget.timeout_s`"),
    ({"parallelism": 10**9}, "invalid_plan", "`parallelism`"),
    ({"targets": {"max_drop": 5}}, "invalid_plan", "cannot drop by more than 1"),
    ({"targets": {"min_metric": 2}}, "invalid_plan", "accuracy is always [0, 1]"),
    ({"targets": {"min_metric": -0.5}}, "invalid_plan", "`targets.min_metric`"),
    ({"targets": {"max_drop_rel": 1}}, "invalid_plan", "`targets.max_drop_rel`"),
    ({"targets": {"max_bytes": 1}}, "invalid_plan", "no plan can make model"),
    ({"targets": {"max_bytes": 0}}, "invalid_plan", "`targets.max_bytes`"),
    ({"targets": {"max_bytes": "9" * 40}}, "invalid_plan", "`targets.max_bytes`"),
    ({"targets": {"max_bytes": 2**70}}, "invalid_plan", "`targets.max_bytes`"),
    ({"targets": {"min_ratio": 1e9}}, "invalid_plan", "can compress more than 8x"),
    ({"space": ["int8"], "targets": {"min_ratio": 4.5}}, "invalid_plan", "more than 4x"),
    ({"space": ["int4/x"]}, "invalid_plan", "`space` entry 'int4/x'"),
    (
        {
            "space": [f"int{b}g{g}" for b in range(2, 9) for g in (32, 64, 128)] * 2
            + [f"cb{2**k}" for k in range(1, 9)]
            + [f"int{b}" for b in range(2, 9)]
        },
        "invalid_plan",
        "at most 32",
    ),
    ({"activation": ["a/8"]}, "invalid_plan", "`activation` entry"),
    ({"rounding": ["nearest/x"]}, "invalid_plan", "`rounding`"),
    ({"pins": {"a=b": "int8"}}, "invalid_plan", "`pins` pattern"),
    ({"pins": {"fc": "int8/nearest/a/8"}}, "invalid_plan", ""),
    ({"space": ["int4g128"]}, "invalid_plan", "add a per-channel format"),
    ({"metric": "kl", "targets": {"max_metric": -1}}, "invalid_plan", "kl is always >= 0"),
    ({"metric": "cosine", "targets": {"max_drop": 3}}, "invalid_plan", "more than 2"),
    ({"holdout": 10**400}, "invalid_request", "holdout"),
    ({"targets": {"max_drop": 10**400}}, "invalid_request", "targets.max_drop"),
]


@pytest.mark.parametrize(("over", "code", "words"), BAD_JOBS)
def test_a_bad_job_is_refused_before_202_and_leaves_no_row(
    server: Server, ids: tuple[int, int], over: dict[str, Any], code: str, words: str
) -> None:
    before = _jobs(server)
    with server.client(server.key_a) as c:
        message = _error(c.post("/v1/jobs", json=_body(ids, **over)), 422, code)
    assert words in message
    assert "--" not in message  # API words, never the CLI's flags
    assert _jobs(server) == before


@pytest.mark.parametrize(
    "raw",
    [
        '"targets": {"min_metric": NaN}',
        '"targets": {"min_ratio": Infinity}',
        '"targets": {"max_drop": -Infinity}',
        '"budget": {"trials": 4, "timeout_s": NaN}',
        '"holdout": NaN',
    ],
)
def test_nan_and_infinity_are_refused(server: Server, ids: tuple[int, int], raw: str) -> None:
    before = _jobs(server)
    body = f'{{"model_id": {ids[0]}, "dataset_id": {ids[1]}, {raw}}}'
    with server.client(server.key_a) as c:
        r = c.post("/v1/jobs", content=body, headers={"content-type": "application/json"})
        _error(r, 422, "invalid_request")
    assert _jobs(server) == before


def test_lists_are_deduplicated_in_order(server: Server, ids: tuple[int, int]) -> None:
    # 4,000 entries (~32 KB) fit the JSON body limit; 10,000 are refused by it (413)
    with server.client(server.key_a) as c:
        body = _body(ids, space=["int8", "int4"] * 2000, activation=["a8", "a16", "a8"])
        r = c.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        config = r.json()["config"]
        assert config["space"] == ["int8", "int4"] and config["activation"] == ["a8", "a16"]
        _cancel_all(c)


def test_a_dataset_of_another_model_is_refused_unless_inputs_match(
    server: Server, ids: tuple[int, int], others: tuple[int, int, int]
) -> None:
    v2, lin, lin_data = others
    before = _jobs(server)
    with server.client(server.key_a) as c:
        message = _error(
            c.post("/v1/jobs", json=_body((lin, ids[1]))), 422, "dataset_model_mismatch"
        )
        assert f"model_id {lin}" in message and "'digits'" in message
        _error(c.post("/v1/jobs", json=_body((ids[0], lin_data))), 422, "dataset_model_mismatch")
        assert _jobs(server) == before
        r = c.post("/v1/jobs", json=_body((v2, ids[1])))  # digits v2: the same inputs
        assert r.status_code == 202, r.text
        _cancel_all(c)


def test_active_jobs_quota(server: Server, ids: tuple[int, int]) -> None:
    with server.client(server.key_a) as c, server.client(server.key_b) as other:
        _cancel_all(c)
        accepted = []
        for _ in range(MAX_ACTIVE):
            r = c.post("/v1/jobs", json=_body(ids))
            assert r.status_code == 202, r.text
            accepted.append(r.json()["id"])
        before = _jobs(server)
        message = _error(c.post("/v1/jobs", json=_body(ids)), 429, "quota_exceeded")
        assert f"{MAX_ACTIVE} active jobs" in message and "cancel" in message
        assert _jobs(server) == before
        # Another team's quota is its own (its ids are its own too: beta has no model 1).
        _error(other.post("/v1/jobs", json=_body(ids)), 404, "not_found")
        assert c.post(f"/v1/jobs/{accepted[0]}/cancel").json()["status"] == "cancelled"
        r = c.post("/v1/jobs", json=_body(ids))
        assert r.status_code == 202, r.text
        _cancel_all(c)


def test_storage_quota(server: Server, others: tuple[int, int, int], tmp_path: Path) -> None:
    before_rows, before_files = server.rows(), server.files()
    junk = tmp_path / "big.onnx"
    with server.client(server.key_a) as c:
        junk.write_bytes(b"\0" * 2000)  # alpha is within 1 KB of its quota
        with open(junk, "rb") as f:
            r = c.post("/v1/models", files={"file": ("big.onnx", f)}, data={"name": "big"})
        message = _error(r, 429, "quota_exceeded")
        assert "2,000 bytes" in message and "quota" in message
    assert server.rows() == before_rows and server.files() == before_files
    with server.client(server.key_b) as c, open(junk, "rb") as f:
        # beta has stored nothing: its quota lets the file through, to the importer
        r = c.post("/v1/models", files={"file": ("big.onnx", f)}, data={"name": "big"})
        assert r.status_code == 422 and r.json()["error"]["code"] != "quota_exceeded", r.text
    assert server.rows() == before_rows and server.files() == before_files


def test_the_openapi_schema_declares_the_bounds(server: Server) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    param = spec["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"][0]
    assert param["schema"]["minimum"] == 1 and param["schema"]["maximum"] == 2**63 - 1
    body = spec["components"]["schemas"]["JobCreate"]["properties"]
    for name in ("model_id", "dataset_id"):
        # model_id may be null (the model named by `model` instead)
        bounds = next(b for b in body[name].get("anyOf", [body[name]]) if b["type"] == "integer")
        assert bounds["minimum"] == 1 and bounds["exclusiveMaximum"] == 2**63
