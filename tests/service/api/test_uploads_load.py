"""Uploads under load, on a real server: slow and stalled bodies, bounded slots, names first.

The server runs with a tiny database pool (2 + 1 connections) so that any request that
held a connection while its body streams would starve the others at once, with 15
upload slots, 1 import slot, a 2 s wait for one, a 3 s body read timeout and a minimum
rate of 40 bytes/s.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.db.migrate import upgrade
from service.db.repos import create_api_key, create_team
from service.db.session import make_engine, session_factory
from service.main import create_app
from service.settings import Settings
from tests.conftest import Digits
from tests.service.api.conftest import Server, start_server
from tests.service.conftest import BACKENDS, throwaway_postgres

pytestmark = pytest.mark.serial  # answers within 1 s: timed alone, not beside other tests

UPLOAD_SLOTS, RETRY_AFTER, READ_TIMEOUT_S, MIN_RATE = 15, 7, 3, 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(
        tmp_path_factory.mktemp("uploads"),
        MPQ_MAX_CONCURRENT_UPLOADS=str(UPLOAD_SLOTS),
        MPQ_MAX_CONCURRENT_IMPORTS="1",
        MPQ_IMPORT_WAIT_S="2",
        MPQ_UPLOAD_READ_TIMEOUT_S=str(READ_TIMEOUT_S),
        MPQ_UPLOAD_MIN_RATE_BPS=str(MIN_RATE),
        MPQ_BUSY_RETRY_AFTER_S=str(RETRY_AFTER),
        MPQ_DB_POOL_SIZE="2",
        MPQ_DB_MAX_OVERFLOW="1",
        MPQ_DB_POOL_TIMEOUT_S="2",
    )


def _form(pt2: Path, name: str) -> tuple[bytes, bytes, int]:
    """(body, content type, where the file's bytes start) of an upload of ``pt2``, by hand."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n{name}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="m.pt2"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body = head + pt2.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}".encode(), len(head)


def _open_upload(server: Server, key: str, body: bytes, content_type: bytes) -> socket.socket:
    """A connection that has sent an upload's headers and nothing of its body yet."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        b"POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n".encode()
        + b"Content-Type: "
        + content_type
        + b"\r\n\r\n"
    )
    sock.sendall(head)
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, dict[str, str]]]:
    """(status, headers, JSON body) of the one response on ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"\0"
        assert not data.endswith(b"\0"), "the server closed the connection without an answer"
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(rest[:length])


def _temp_files(server: Server) -> set[str]:
    return {f for f in server.files() if f.startswith("tmp/")}


def _ready(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=10)


def _wait_for(predicate: object, what: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_slow_uploads_leave_the_api_answering(server: Server, digits: Digits) -> None:
    body, content_type, start_of_file = _form(digits.pt2, "slow")
    socks = [_open_upload(server, server.key_a, body, content_type) for _ in range(UPLOAD_SLOTS)]
    sent = [start_of_file + 100]
    for sock in socks:  # the form's head and a little of the file at once, then a trickle
        sock.sendall(body[: sent[0]])
    stop = threading.Event()

    def trickle() -> None:  # a byte per connection every 0.5 s: never past the read timeout
        while not stop.wait(0.5):
            for sock in socks:
                with contextlib.suppress(OSError):  # answered (408) and closed already
                    sock.sendall(body[sent[0] : sent[0] + 1])
            sent[0] += 1

    dripper = threading.Thread(target=trickle)
    dripper.start()
    try:
        _wait_for(
            lambda: _ready(server).status_code == 503, "the slow uploads never took every slot"
        )
        unready = _ready(server)
        assert unready.json()["error"]["code"] == "busy"
        assert unready.headers["retry-after"] == str(RETRY_AFTER)
        with server.client(server.key_a) as c:
            for path in ["/v1/models", "/v1/datasets", "/v1/jobs"] * 4:
                start = time.monotonic()
                r = c.get(path)
                assert r.status_code == 200, r.text
                assert time.monotonic() - start < 1.0, path
            start = time.monotonic()
            with open(digits.pt2, "rb") as f:
                r = c.post("/v1/models", files={"file": ("d.pt2", f)}, data={"name": "one-more"})
            assert time.monotonic() - start < 1.0
        assert r.status_code == 503 and r.json()["error"]["code"] == "busy", r.text
        assert r.headers["retry-after"] == str(RETRY_AFTER)
        assert "upload slots" in r.json()["error"]["message"]
        assert len(_temp_files(server)) == UPLOAD_SLOTS  # every slow body is being received
        # Under MIN_RATE on average once past the read timeout (after ~9 s): cut off.
        for sock in socks:
            status, _, answer = _response(sock)
            assert (status, answer["error"]["code"]) == (408, "upload_timeout"), answer
            assert "bytes/s" in answer["error"]["message"]
    finally:
        stop.set()
        dripper.join()
        for sock in socks:
            sock.close()
    _wait_for(lambda: _ready(server).status_code == 200, "the slots were not given back")
    _wait_for(lambda: not _temp_files(server), "the slow uploads' files were left behind")
    assert server.rows() == (0, 0)


def test_a_stalled_body_is_refused_with_408_and_its_file_removed(
    server: Server, digits: Digits
) -> None:
    body, content_type, _ = _form(digits.pt2, "stalled")
    sock = _open_upload(server, server.key_a, body, content_type)
    try:
        sock.sendall(body[: len(body) // 2])
        _wait_for(lambda: len(_temp_files(server)) == 1, "the upload did not start", 5)
        start = time.monotonic()
        status, _, answer = _response(sock)
        waited = time.monotonic() - start
    finally:
        sock.close()
    assert (status, answer["error"]["code"]) == (408, "upload_timeout"), answer
    assert f"{READ_TIMEOUT_S} s" in answer["error"]["message"]
    assert waited < READ_TIMEOUT_S + 2
    assert not _temp_files(server)
    assert server.rows() == (0, 0)


def test_concurrent_uploads_are_created_or_cleanly_refused(server: Server, digits: Digits) -> None:
    def upload(i: int) -> httpx.Response:
        with server.client(server.key_b) as c, open(digits.pt2, "rb") as f:
            return c.post("/v1/models", files={"file": ("d.pt2", f)}, data={"name": f"m{i}"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(upload, range(20)))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {201, 503}, [r.text for r in answers if r.status_code not in (201, 503)]
    assert statuses.count(201) >= 1, statuses  # the import slot did work
    assert statuses.count(503) >= 20 - UPLOAD_SLOTS, statuses
    for r in answers:
        if r.status_code == 503:
            assert r.json()["error"]["code"] == "busy"
            assert r.headers["retry-after"] == str(RETRY_AFTER)
    with server.client(server.key_b) as c:
        assert c.get("/v1/models").json()["count"] == statuses.count(201)
    assert not _temp_files(server)


@pytest.mark.parametrize("name", ["   ", "", "\t", "bad\x07name"])
def test_a_blank_or_unprintable_model_name_is_refused_before_the_import(
    server: Server, digits: Digits, name: str
) -> None:
    with server.client(server.key_a) as c, open(digits.pt2, "rb") as f:
        start = time.monotonic()
        r = c.post("/v1/models", files={"file": ("d.pt2", f)}, data={"name": name})
        elapsed = time.monotonic() - start
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_name", r.text
    assert elapsed < 0.5  # an import takes seconds
    assert not _temp_files(server)


@pytest.mark.parametrize(
    ("name", "model_id", "status", "code"),
    [
        ("  ", "1", 422, "invalid_name"),
        ("d", "²", 422, "invalid_request"),
        ("d", "\u0661", 422, "invalid_request"),  # ARABIC-INDIC DIGIT ONE
        ("d", "-1", 422, "invalid_request"),
        ("d", str(10**25), 422, "invalid_request"),
        ("d", str(2**63), 422, "invalid_request"),
        ("d", "9" * 5000, 422, "invalid_request"),
        ("d", str(2**63 - 1), 404, "not_found"),
        ("d", " 999999 ", 404, "not_found"),
    ],
)
def test_dataset_form_fields_are_checked_before_the_file_is_read(
    server: Server, digits: Digits, name: str, model_id: str, status: int, code: str
) -> None:
    with server.client(server.key_a) as c, open(digits.npz, "rb") as f:
        r = c.post(
            "/v1/datasets", files={"file": ("d.npz", f)}, data={"name": name, "model_id": model_id}
        )
    assert r.status_code == status and r.json()["error"]["code"] == code, r.text
    assert not _temp_files(server)


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mpq.db'}"
    else:
        with throwaway_postgres() as url:
            yield url


def test_an_exhausted_pool_answers_503_database_busy(tmp_path: Path, database_url: str) -> None:
    url = database_url
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        _, secret = create_api_key(session, team=create_team(session, name="t"), name="k")
    engine.dispose()
    settings = Settings(
        data_dir=tmp_path,
        database_url=url,
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_s=0.3,
        busy_retry_after_s=3,
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        auth = {"Authorization": f"Bearer {secret}"}
        held = app.state.engine.connect()  # the pool's one connection
        try:
            r = client.get("/v1/models", headers=auth)
            assert r.status_code == 503 and r.json()["error"]["code"] == "database_busy"
            assert r.headers["retry-after"] == "3"
            ready = client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "database_busy"
        finally:
            held.close()
        assert client.get("/v1/models", headers=auth).status_code == 200
