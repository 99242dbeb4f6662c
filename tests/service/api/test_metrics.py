"""``GET /metrics`` and the broker half of ``/readyz``, against real uvicorn processes.

The servers have a metrics token (``/metrics`` is off without one; its access rules are
tested in test_hardening.py). No worker runs next to these servers, so a task sent under
a name nobody consumes stays in the broker queue, and the scraped queue depth can be
checked exactly.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from service.db import Dataset, Job, JobStatus, Model, ModelKind, Team, make_engine
from service.db.session import session_factory
from service.queue import make_celery
from service.settings import Settings
from tests.service.api.conftest import Server, start_server
from tests.workers.conftest import redis_url  # noqa: F401 -- a fixture

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]

UNCONSUMED = "mpq.test.nobody_consumes"
STATES = {s.value for s in JobStatus}
LATENCY = "mpq_http_request_duration_seconds"
DEAD_BROKER = "redis://127.0.0.1:1/0"  # port 1: nothing listens, connections are refused
TOKEN = "test-metrics-token"


def _labels(**labels: str) -> Labels:
    return frozenset(labels.items())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite-backed server with a metrics token, shared by this module."""
    yield from start_server(tmp_path_factory.mktemp("api"), MPQ_METRICS_TOKEN=TOKEN)


def _scrape(server: Server) -> Samples:
    """Every sample of ``/metrics`` (with the token), parsed strictly by prometheus_client."""
    with server.client(None) as c:
        r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = s.value
    return samples


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def _queue_app(server: Server, broker_url: str, queue: str) -> Settings:
    # explicit values: MPQ_* variables of the test process must not redirect the broker
    return Settings(
        data_dir=server.data_dir,
        database_url=server.database_url,
        broker_url=broker_url,
        queue=queue,
    )


def _send(settings: Settings, n: int) -> None:
    app = make_celery(settings)
    try:
        for i in range(n):
            app.send_task(UNCONSUMED, args=[i])
    finally:
        app.close()


def test_metrics_list_every_job_state(server: Server) -> None:
    samples = _scrape(server)
    for state in STATES:
        assert samples[("mpq_jobs", _labels(state=state))] == 0
    assert samples[("mpq_trials_total", _labels())] == 0
    assert samples[("mpq_broker_up", _labels())] == 1
    assert samples[("mpq_database_up", _labels())] == 1


def test_jobs_by_state_and_trials(server: Server) -> None:
    rows = {
        JobStatus.QUEUED: [0, 0],
        JobStatus.PREPARING: [0],
        JobStatus.RUNNING: [3],
        JobStatus.SUCCEEDED: [8, 8, 8],
        JobStatus.FAILED: [1],
        JobStatus.CANCELLED: [],
    }
    engine = make_engine(server.database_url)
    try:
        with session_factory(engine)() as session, session.begin():
            for team_name in ("alpha", "beta"):  # counted across teams
                team = session.scalars(select(Team).where(Team.name == team_name)).one()
                model = Model(
                    team_id=team.id,
                    name="m",
                    version=1,
                    kind=ModelKind.ONNX,
                    sha256="0" * 64,
                    size_bytes=1,
                    blob_path="models/none.onnx",
                    inventory={},
                )
                session.add(model)
                session.flush()
                dataset = Dataset(
                    team_id=team.id,
                    name="d",
                    sha256="1" * 64,
                    size_bytes=1,
                    blob_path="datasets/none.npz",
                    num_samples=1,
                    inputs={},
                )
                session.add(dataset)
                session.flush()
                ids = {"team_id": team.id, "model_id": model.id, "dataset_id": dataset.id}
                session.add_all(
                    Job(**ids, status=status, config={}, trials_done=done, trials_total=8)
                    for status, trials in rows.items()
                    for done in trials
                )
    finally:
        engine.dispose()
    samples = _scrape(server)
    for status, trials in rows.items():
        assert samples[("mpq_jobs", _labels(state=status.value))] == 2 * len(trials)
    assert samples[("mpq_trials_total", _labels())] == 2 * sum(sum(t) for t in rows.values())


def test_request_latency_by_route_template(server: Server) -> None:
    job = _labels(method="GET", route="/v1/jobs/{job_id}", status="401")
    missing = _labels(method="GET", route="other", status="404")
    before = _scrape(server)
    with server.client(None) as c:
        for job_id in (101, 102, 103):
            assert c.get(f"/v1/jobs/{job_id}").status_code == 401
        for _ in range(2):
            assert c.get("/no/such/route").status_code == 404
    after = _scrape(server)
    count = f"{LATENCY}_count"
    assert after[(count, job)] == before.get((count, job), 0) + 3
    assert after[(count, missing)] == before.get((count, missing), 0) + 2
    assert after[(f"{LATENCY}_bucket", job | {("le", "+Inf")})] == after[(count, job)]
    assert after[(f"{LATENCY}_sum", job)] > 0
    # the scrape before this one was itself timed
    assert after[(count, _labels(method="GET", route="/metrics", status="200"))] >= 1
    routes = {dict(labels).get("route") for name, labels in after if name.startswith(LATENCY)}
    assert not any(r and ("101" in r or r.startswith("/no/")) for r in routes), routes


def test_queue_depth_on_the_embedded_broker(server: Server) -> None:
    broker = f"sqla+sqlite:///{server.data_dir / 'broker.db'}"  # the server's default
    depth = ("mpq_queue_depth", _labels(queue="mpq"))
    assert _scrape(server)[depth] == 0
    _send(_queue_app(server, broker, "mpq"), 5)
    samples = _scrape(server)
    assert samples[depth] == 5
    assert samples[("mpq_broker_up", _labels())] == 1


@pytest.fixture(scope="module")
def dead_broker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose broker URL points at a port where nothing listens."""
    yield from start_server(
        tmp_path_factory.mktemp("api_dead"), MPQ_BROKER_URL=DEAD_BROKER, MPQ_METRICS_TOKEN=TOKEN
    )


def test_readyz_without_broker(dead_broker_server: Server) -> None:
    with dead_broker_server.client(None) as c:
        start = time.monotonic()
        r = c.get("/readyz")
        elapsed = time.monotonic() - start
        assert c.get("/healthz").status_code == 200
    message = _error(r, 503, "broker_unavailable")
    assert "127.0.0.1:1" in message and "MPQ_BROKER_URL" in message, message
    assert elapsed < 10, elapsed


def test_metrics_without_broker(dead_broker_server: Server) -> None:
    samples = _scrape(dead_broker_server)
    assert samples[("mpq_broker_up", _labels())] == 0
    assert not any(name == "mpq_queue_depth" for name, _ in samples)
    assert {dict(labels)["state"] for name, labels in samples if name == "mpq_jobs"} == STATES
    assert samples[("mpq_database_up", _labels())] == 1


@pytest.fixture
def redis_server(
    tmp_path: Path,
    redis_url: str,  # noqa: F811 -- the fixture imported above
) -> Iterator[tuple[Server, Settings]]:
    """A server on the test Redis, with a queue of its own (deleted afterwards)."""
    queue = f"mpq-test-{uuid.uuid4().hex[:12]}"
    for server in start_server(
        tmp_path / "api", MPQ_BROKER_URL=redis_url, MPQ_QUEUE=queue, MPQ_METRICS_TOKEN=TOKEN
    ):
        settings = _queue_app(server, redis_url, queue)
        try:
            yield server, settings
        finally:
            app = make_celery(settings)
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(queue)
            app.close()


def test_queue_depth_on_redis(redis_server: tuple[Server, Settings]) -> None:
    server, settings = redis_server
    depth = ("mpq_queue_depth", _labels(queue=settings.queue))
    with server.client(None) as c:
        assert c.get("/readyz").status_code == 200
    assert _scrape(server)[depth] == 0  # Redis has no list for an empty queue
    _send(settings, 7)
    samples = _scrape(server)
    assert samples[depth] == 7
    assert samples[("mpq_broker_up", _labels())] == 1
