"""HTTP hardening, against real uvicorn processes: body limits, headers, docs, metrics,
rate limits, conditional downloads and the modes of the files the service creates.

Two servers: ``server`` has a metrics token and the default rate limits; ``limited``
has no metrics token, a tiny rate limit, and a data directory the service itself
creates (so that its mode is the service's doing, not pytest's).
"""

from __future__ import annotations

import hashlib
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from service.api.errors import MAX_MESSAGE_CHARS, STATUS
from service.blobs import BlobStore
from service.db import Dataset, Job, JobStatus, Model, ModelKind, Team, make_engine
from service.db.repos.artifacts import put_artifacts
from service.db.session import session_factory
from tests.service.api.conftest import Server, start_server

pytestmark = pytest.mark.serial  # answers within 1 s: timed alone, not beside other tests

TOKEN = "metrics-token-for-tests"
LIMIT = 64 * 1024  # the default max_json_bytes
CODES = {error.code for error in STATUS}
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
BURST, RATE = 3, 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(tmp_path_factory.mktemp("hard"), MPQ_METRICS_TOKEN=TOKEN)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose data directory ``data/`` does not exist until the service makes it."""
    data = tmp_path_factory.mktemp("limited") / "data"
    for s in start_server(
        data.parent,
        database_url=f"sqlite:///{data / 'mpq.db'}",
        MPQ_DATA_DIR=str(data),
        MPQ_RATE_LIMIT_PER_S=str(RATE),
        MPQ_RATE_LIMIT_BURST=str(BURST),
    ):
        s.data_dir = data
        yield s


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert code in CODES, code  # every code answered is an MPQ error class with a status
    return str(body["error"]["message"])


def _rss_kib(pid: int) -> int:
    found = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert found is not None
    return int(found.group(1))


def _big_body(size: int) -> bytes:
    head = b'{"model_id": 1, "dataset_id": 1, "metric": "'
    return head + b"a" * (size - len(head) - 2) + b'"}'


# -- body limits ------------------------------------------------------------------


def test_a_16_mb_json_body_is_refused_at_once_while_healthz_answers(server: Server) -> None:
    body = _big_body(16 << 20)
    rss_before = _rss_kib(server.process.pid)
    results: list[tuple[httpx.Response, float]] = []

    def send(chunked: bool) -> None:
        content = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
        with server.client(server.key_a) as c:
            start = time.monotonic()
            r = c.post("/v1/jobs", content=content, headers={"Content-Type": "application/json"})
            results.append((r, time.monotonic() - start))

    for chunked in (False, True):  # Content-Length up front, then counted as it streams
        thread = threading.Thread(target=send, args=(chunked,))
        thread.start()
        probes = []
        with server.client(None) as c:
            while thread.is_alive() or not probes:
                start = time.monotonic()
                assert c.get("/healthz").status_code == 200
                probes.append(time.monotonic() - start)
        thread.join()
        assert max(probes) < 1.0, probes
    for r, elapsed in results:
        message = _error(r, 413, "body_too_large")
        assert "65,536 bytes" in message and "max_json_bytes" in message, message
        assert elapsed < 10, elapsed
        assert len(r.content) < 1024
    # nothing of the bodies was kept (it used to hold 1.44 GB after one 16 MB body)
    assert _rss_kib(server.process.pid) - rss_before < 64 * 1024


def test_an_800_kb_body_is_refused_quickly(server: Server) -> None:
    with server.client(server.key_a) as c:
        start = time.monotonic()
        r = c.post("/v1/jobs", content=_big_body(800_000), headers={"Content-Type": "text/plain"})
        assert time.monotonic() - start < 2.0
    _error(r, 413, "body_too_large")


def test_a_body_at_the_limit_is_read(server: Server) -> None:
    with server.client(server.key_a) as c:
        r = c.post(
            "/v1/jobs", content=_big_body(LIMIT), headers={"Content-Type": "application/json"}
        )
    # read and validated (an unknown metric, or no such model): the limit is inclusive
    assert r.status_code in (404, 422), r.text[:300]
    assert r.json()["error"]["code"] in CODES


def test_uploads_are_exempt_but_a_multipart_body_elsewhere_is_not(server: Server) -> None:
    blob = bytes(range(256)) * 800  # 200 KiB, over the JSON limit
    with server.client(server.key_a) as c:
        r = c.post("/v1/models", files={"file": ("m.onnx", blob)}, data={"name": "m"})
        assert r.status_code == 422, r.text  # read in full and refused as a model, not 413
        assert r.json()["error"]["code"] != "body_too_large"
        r = c.post("/v1/jobs", files={"file": ("m.onnx", blob)}, data={"name": "m"})
        _error(r, 413, "body_too_large")


def test_validation_messages_are_capped(server: Server) -> None:
    space = b"[" + b",".join([b"1"] * 30_000) + b"]"  # 30,000 problems in 60 KB
    body = b'{"model_id": 1, "dataset_id": 1, "space": ' + space + b"}"
    assert len(body) < LIMIT
    with server.client(server.key_a) as c:
        r = c.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    message = _error(r, 422, "invalid_request")
    assert len(message) <= MAX_MESSAGE_CHARS and len(r.content) < 5000, len(r.content)
    assert message.startswith("invalid request: space.0: "), message
    assert message.endswith("; and 29,990 more"), message[-100:]


@pytest.mark.parametrize("depth", [25_000, 500])
def test_a_deeply_nested_body_is_a_client_error(server: Server, depth: int) -> None:
    body = b'{"model_id": 1, "dataset_id": 1, "pins": ' + b"[" * depth + b"]" * depth + b"}"
    with server.client(server.key_a) as c:
        r = c.post("/v1/jobs", content=body[:LIMIT], headers={"Content-Type": "application/json"})
    message = _error(r, 422, "invalid_request")
    if depth > 1000:
        assert "nests" in message, message


def test_a_body_that_is_not_utf8_is_a_client_error(server: Server) -> None:
    with server.client(server.key_a) as c:
        r = c.post(
            "/v1/jobs", content=b'{"a": "\xff\xfe"}', headers={"Content-Type": "application/json"}
        )
    _error(r, 422, "invalid_request")


# -- headers, redirects ---------------------------------------------------------------


def test_security_headers_on_every_response(server: Server) -> None:
    with server.client(server.key_a) as a, server.client(None) as anon:
        responses = {
            "healthz": anon.get("/healthz"),
            "openapi": anon.get("/openapi.json"),
            "jobs": a.get("/v1/jobs"),
            "401": anon.get("/v1/jobs"),
            "404 row": a.get("/v1/jobs/424242"),
            "404 route": anon.get("/nowhere"),
            "405": anon.post("/healthz"),
            "413": a.post("/v1/jobs", content=_big_body(LIMIT + 1)),
            "422": a.post("/v1/jobs", json={"model_id": "x"}),
            "docs": anon.get("/docs"),
        }
    expected = {
        "healthz": 200,
        "openapi": 200,
        "jobs": 200,
        "401": 401,
        "404 row": 404,
        "404 route": 404,
        "405": 405,
        "413": 413,
        "422": 422,
        "docs": 200,
    }
    for name, r in responses.items():
        assert r.status_code == expected[name], (name, r.text)
        for header, value in SECURITY.items():
            assert r.headers.get(header) == value, (name, header, r.headers)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, (name, csp)
        api = r.request.url.path.startswith("/v1")
        assert (r.headers.get("cache-control") == "no-store") is api, (name, r.headers)
        if name != "docs":
            assert csp.startswith("default-src 'none';"), (name, csp)
            assert "'self'" not in csp
    docs_csp = responses["docs"].headers["content-security-policy"]
    assert "script-src 'self'" in docs_csp and "style-src 'self'" in docs_csp
    assert "unsafe-inline" not in docs_csp and "unsafe-eval" not in docs_csp
    assert responses["405"].headers["allow"] == "GET"


def test_a_trailing_slash_is_404_and_never_reflects_the_host(server: Server) -> None:
    with server.client(server.key_a) as c:
        for path in ("/v1/jobs/", "/v1/models/", "/healthz/", "/docs/"):
            r = c.get(path, headers={"Host": "evil.example"})
            message = _error(r, 404, "not_found")
            assert "location" not in r.headers, path
            assert "trailing slash" in message and "evil.example" not in message, message


# -- docs -------------------------------------------------------------------------


def test_docs_page_and_every_asset_it_references_are_served_locally(server: Server) -> None:
    with server.client(None) as c:
        page = c.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        html = page.text
        assert (
            "http:" not in html
            and "https:" not in html
            and "//" not in html.replace("<!doctype html>", "")
        )
        assert "<script>" not in html  # no inline script: CSP script-src 'self'
        refs = re.findall(r'(?:src|href|data-openapi-url)="([^"]+)"', html)
        types = {
            ".js": "text/javascript",
            ".css": "text/css",
            ".png": "image/png",
            ".json": "application/json",
        }
        assert {Path(r).suffix for r in refs} == set(types), refs
        for ref in refs:
            assert ref.startswith("/"), ref
            r = c.get(ref)
            assert r.status_code == 200, ref
            assert r.headers["content-type"].split(";")[0] == types[Path(ref).suffix], ref
            assert r.headers["x-content-type-options"] == "nosniff"
            assert len(r.content) > 100, ref
        bundle = c.get("/docs/assets/swagger-ui-bundle.js").text
        assert 'PACKAGE_VERSION:"5.' in bundle  # Swagger UI 5 renders OpenAPI 3.1
        assert c.get("/openapi.json").json()["openapi"].startswith("3.1")
        _error(c.get("/docs/assets/..%2F..%2Fmain.py"), 404, "not_found")
        _error(c.get("/docs/assets/VENDORED.md"), 404, "not_found")
        _error(c.get("/redoc"), 404, "not_found")  # ReDoc's page loads from a CDN


# -- metrics ----------------------------------------------------------------------


def test_metrics_are_off_without_a_token(limited: Server) -> None:
    with limited.client(None) as c:
        message = _error(c.get("/metrics"), 404, "not_found")
    assert "MPQ_METRICS_TOKEN" in message


def test_metrics_need_the_token_and_show_no_team(server: Server) -> None:
    with server.client(None) as c:
        for headers in (
            {},
            {"Authorization": f"Bearer {server.key_a}"},
            {"Authorization": "Bearer x"},
        ):
            r = c.get("/metrics", headers=headers)
            _error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
        r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    labels = {
        name
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
        for name in sample.labels
    }
    assert labels <= {"state", "queue", "method", "route", "status", "le"}, labels
    assert "alpha" not in r.text and "beta" not in r.text  # the teams' names


# -- rate limits ------------------------------------------------------------------


def test_rate_limit_per_key_with_retry_after(limited: Server) -> None:
    with limited.client(limited.key_a) as a, limited.client(limited.key_b) as b:
        for _ in range(BURST):
            assert a.get("/v1/jobs").status_code == 200
        r = a.get("/v1/jobs")
        message = _error(r, 429, "rate_limited")
        assert r.headers["retry-after"] == "1", r.headers  # 1 request per second
        assert "per second" in message, message
        for header, value in SECURITY.items():
            assert r.headers[header] == value
        assert b.get("/v1/jobs").status_code == 200  # another key has its own bucket
        for _ in range(2 * BURST):  # the probes are never limited
            assert a.get("/healthz").status_code == 200
        time.sleep(float(r.headers["retry-after"]) + 0.05)
        assert a.get("/v1/jobs").status_code == 200


# -- conditional downloads ----------------------------------------------------------


def _artifact(server: Server, content: bytes) -> tuple[int, str]:
    """A job of team alpha with the artifact ``model.mpq`` (a real blob); its id, sha256."""
    store = BlobStore(server.blob_dir)
    temp = store.new_temp()
    temp.write_bytes(content)
    key, _, size, sha = store.commit_file(temp, kind="artifacts", ext="mpq")
    engine = make_engine(server.database_url)
    try:
        with session_factory(engine)() as session, session.begin():
            team = session.scalars(select(Team).where(Team.name == "alpha")).one()
            common = {"team_id": team.id, "sha256": "0" * 64, "size_bytes": 1}
            model = Model(
                **common,
                name="m",
                version=1,
                kind=ModelKind.ONNX,
                blob_path="models/x.onnx",
                inventory={},
            )
            dataset = Dataset(
                **common, name="d", blob_path="datasets/x.npz", num_samples=1, inputs={}
            )
            session.add_all([model, dataset])
            session.flush()
            job = Job(
                team_id=team.id,
                model_id=model.id,
                dataset_id=dataset.id,
                status=JobStatus.SUCCEEDED,
                config={},
                trials_total=1,
            )
            session.add(job)
            session.flush()
            put_artifacts(session, job_id=job.id, files=[("model.mpq", key, size, sha)])
            job_id = job.id
    finally:
        engine.dispose()
    return job_id, sha


def test_if_none_match_answers_304(server: Server) -> None:
    content = b"MPQ artifact bytes " * 100
    job_id, sha = _artifact(server, content)
    assert sha == hashlib.sha256(content).hexdigest()
    url = f"/v1/jobs/{job_id}/artifacts/model.mpq"
    etag = f'"{sha}"'
    with server.client(server.key_a) as c:
        r = c.get(url)
        assert r.status_code == 200 and r.content == content
        assert r.headers["etag"] == etag
        assert r.headers["cache-control"] == "private, no-cache"
        for match in (etag, "*", f'"abc", {etag}', f"W/{etag}", f'"x" ,W/{etag}'):
            r = c.get(url, headers={"If-None-Match": match})
            assert r.status_code == 304, match
            assert r.content == b"" and r.headers["etag"] == etag
            assert r.headers["x-content-type-options"] == "nosniff"
        for match in ('"abc"', f'"{sha[:-1]}"', sha):  # the last: not a quoted tag
            r = c.get(url, headers={"If-None-Match": match})
            assert r.status_code == 200 and r.content == content, match
    with server.client(server.key_b) as c:  # another team: still 404, not 304
        _error(c.get(url, headers={"If-None-Match": "*"}), 404, "not_found")


# -- file modes -------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_service_creates_its_files_private(limited: Server) -> None:
    data = limited.data_dir
    assert _mode(data) == 0o700
    sqlite = [p for p in data.iterdir() if p.name.startswith(("mpq.db", "broker.db"))]
    assert {p.name for p in sqlite} >= {"mpq.db", "broker.db"}, sqlite
    for path in sqlite:  # with their -wal and -shm files
        assert _mode(path) == 0o600, path
    with limited.client(limited.key_b) as c:  # an upload the importer refuses
        r = c.post("/v1/models", files={"file": ("m.pt2", b"not a model")}, data={"name": "m"})
    assert r.status_code == 422, r.text
    blobs = data / "blobs"
    assert _mode(blobs) == 0o700 and _mode(blobs / "tmp") == 0o700
    # the blob store as the workers use it (a file written under any umask)
    store = BlobStore(blobs)
    work = store.new_temp_dir()
    assert _mode(work) == 0o700
    (work / "model.mpq").write_bytes(b"x")
    (work / "model.mpq").chmod(0o644)
    key, created, _, _ = store.commit_file(work / "model.mpq", kind="artifacts", ext="mpq")
    assert created
    assert _mode(store.path(key)) == 0o600 and _mode(store.path(key).parent) == 0o700
    assert _mode(store.new_temp()) == 0o600
