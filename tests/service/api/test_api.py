"""The API over HTTP against a real uvicorn process: uploads, reads, isolation, bad input.

Every test runs on both stacks: SQLite + the SQLite broker, and PostgreSQL + Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import Digits
from tests.engine.io.malicious import VECTORS, build_malicious_pt2
from tests.service.api.conftest import STACKS, Server, start_stack

PICKLE = b"\x80\x04K\x01."  # torch.save-style pickle protocol 4 of the int 1


@pytest.fixture(scope="module", params=STACKS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on each stack in turn, shared by this module's tests."""
    yield from start_stack(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module", params=STACKS)
def small_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server whose upload limit is 4 KiB, on each stack."""
    tmp = tmp_path_factory.mktemp(f"small-{request.param}")
    yield from start_stack(request.param, tmp, MPQ_MAX_UPLOAD_BYTES="4096")


def _error(response: httpx.Response, status: int, code: str) -> str:
    """Check an error response's status and exact shape; return its message."""
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def _upload_model(client: httpx.Client, path: Path, name: str) -> httpx.Response:
    with open(path, "rb") as f:
        return client.post("/v1/models", files={"file": (path.name, f)}, data={"name": name})


def _upload_data(client: httpx.Client, path: Path, name: str, model_id: Any) -> httpx.Response:
    with open(path, "rb") as f:
        return client.post(
            "/v1/datasets",
            files={"file": (path.name, f)},
            data={"name": name, "model_id": str(model_id)},
        )


def test_health_needs_no_key(server: Server) -> None:
    with server.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        assert c.get("/openapi.json").json()["info"]["title"] == "MPQ"


def test_upload_list_get_and_versions(server: Server, digits: Digits) -> None:
    with server.client(server.key_a) as c:
        first = _upload_model(c, digits.pt2, "digits")
        assert first.status_code == 201, first.text
        model = first.json()
        assert model["version"] == 1 and model["kind"] == "pt2"
        # who uploaded it: the key's name and clear prefix, never the secret
        assert model["created_by"]["prefix"] == server.key_a[:12]
        assert set(model["created_by"]) == {"id", "name", "prefix"}
        # the importer's IR is kept beside the upload: it is all the workers load
        assert (server.blob_dir / "ir" / f"{model['sha256']}.ir").is_file()
        assert len(model["inventory"]["layers"]) == 4
        assert (server.blob_dir / "models" / f"{model['sha256']}.pt2").is_file()

        again = _upload_model(c, digits.onnx, "digits")
        assert again.status_code == 201, again.text
        assert again.json()["version"] == 2 and again.json()["kind"] == "onnx"

        listed = c.get("/v1/models").json()
        assert listed["count"] >= 2
        assert {m["id"] for m in listed["data"]} >= {model["id"], again.json()["id"]}
        assert "inventory" not in listed["data"][0]
        page = c.get("/v1/models", params={"skip": 1, "limit": 1}).json()
        assert len(page["data"]) == 1 and page["count"] == listed["count"]

        got = c.get(f"/v1/models/{model['id']}").json()
        assert got["inventory"] == model["inventory"] and got["name"] == "digits"

        data = _upload_data(c, digits.npz, "digits-data", model["id"])
        assert data.status_code == 201, data.text
        ds = data.json()
        assert ds["num_samples"] > 0 and len(ds["inputs"]) == 1
        assert ds["model_id"] == model["id"] and ds["created_by"] == model["created_by"]
        assert (server.blob_dir / "datasets" / f"{ds['sha256']}.npz").is_file()
        assert c.get(f"/v1/datasets/{ds['id']}").json() == ds
    assert not list((server.blob_dir / "tmp").iterdir())


def test_team_isolation(server: Server, digits: Digits) -> None:
    with server.client(server.key_a) as a, server.client(server.key_b) as b:
        model = _upload_model(a, digits.onnx, "iso").json()
        ds = _upload_data(a, digits.npz, "iso-data", model["id"]).json()
        _error(b.get(f"/v1/models/{model['id']}"), 404, "not_found")
        _error(b.get(f"/v1/datasets/{ds['id']}"), 404, "not_found")
        assert b.get("/v1/models").json() == {"data": [], "count": 0}
        assert b.get("/v1/datasets").json() == {"data": [], "count": 0}
        # another team's model cannot be used to validate (and so probe) a dataset
        _error(_upload_data(b, digits.npz, "probe", model["id"]), 404, "not_found")


@pytest.mark.parametrize("route", ["/v1/models", "/v1/models/1", "/v1/datasets", "/v1/datasets/1"])
def test_unauthorized(server: Server, route: str) -> None:
    for key in (None, "mpq_not-a-real-key-at-all", "garbage"):
        with server.client(key) as c:
            r = c.get(route)
            _error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
    with server.client(None) as c:
        _error(c.post("/v1/models", files={"file": ("m.pt2", b"x")}), 401, "unauthorized")


def _bad_input(server: Server, send: Any, status: int, code: str) -> None:
    before_rows, before_files = server.rows(), server.files()
    with server.client(server.key_a) as c:
        _error(send(c), status, code)
    assert server.rows() == before_rows
    assert server.files() == before_files


def test_bad_model_files(server: Server, tmp_path: Path) -> None:
    pickle, empty = tmp_path / "model.pt", tmp_path / "empty.pt2"
    pickle.write_bytes(PICKLE)
    empty.write_bytes(b"")
    _bad_input(server, lambda c: _upload_model(c, pickle, "m"), 422, "torch_save_pickle")
    _bad_input(server, lambda c: _upload_model(c, empty, "m"), 422, "corrupt_file")


def test_a_refused_upload_is_named_as_the_user_named_it(server: Server) -> None:
    # the importer reads a temporary file; its message names the client's file instead
    with server.client(server.key_a) as c:
        files = {"file": ("../../my notes.txt", b"not a model at all")}
        response = c.post("/v1/models", files=files, data={"name": "m"})
    message = _error(response, 422, "unsupported_model_format")
    assert "'my notes.txt'" in message and ".part" not in message, message
    assert "/" not in message.split("'my notes.txt'")[0], message


@pytest.mark.parametrize("vector", VECTORS)
def test_malicious_model_files_are_refused_and_run_nothing(
    server: Server, vector: str, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"  # the payload would create it, in any process it ran in
    evil = build_malicious_pt2(vector, tmp_path / "evil.pt2", marker)
    _bad_input(server, lambda c: _upload_model(c, evil, "evil"), 422, "unsafe_archive")
    assert not marker.exists()


def test_bad_dataset(server: Server, digits: Digits, tmp_path: Path) -> None:
    with server.client(server.key_a) as c:
        model = _upload_model(c, digits.onnx, "for-data").json()
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((8, 3, 5, 5), dtype=np.float32))
    _bad_input(server, lambda c: _upload_data(c, wrong, "w", model["id"]), 422, "data_shape")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}] * 8, dtype=object))
    _bad_input(server, lambda c: _upload_data(c, pickled, "p", model["id"]), 422, "pickled_data")
    _bad_input(server, lambda c: _upload_data(c, wrong, "w", 10**9), 404, "not_found")


def test_malformed_requests(server: Server, digits: Digits) -> None:
    _bad_input(server, lambda c: c.get("/v1/models/999999"), 404, "not_found")
    _bad_input(server, lambda c: c.get("/v1/datasets/999999"), 404, "not_found")
    _bad_input(server, lambda c: c.get("/v1/models/abc"), 422, "invalid_request")
    _bad_input(server, lambda c: c.get("/v1/models?limit=0"), 422, "invalid_request")
    _bad_input(server, lambda c: c.post("/v1/models", json={"name": "x"}), 422, "invalid_request")
    _bad_input(
        server,
        lambda c: c.post("/v1/models", files={"file": ("m.onnx", b"x")}),
        422,
        "invalid_request",
    )
    _bad_input(
        server,
        lambda c: c.post("/v1/models", data={"name": "x"}, files={"other": ("f", b"x")}),
        422,
        "invalid_request",
    )
    _bad_input(
        server, lambda c: _upload_data(c, digits.npz, "d", "not-a-number"), 422, "invalid_request"
    )
    broken = {"content-type": "multipart/form-data; boundary=b"}
    _bad_input(
        server,
        lambda c: c.post("/v1/models", content=b"--b\r\nbroken", headers=broken),
        422,
        "invalid_request",
    )
    # the file sent as a text field, and as a file part with an empty file name
    before_rows, before_files = server.rows(), server.files()
    with server.client(server.key_a) as c:
        as_text = c.post("/v1/models", files={"name": (None, "m"), "file": (None, "model.pt2")})
        message = _error(as_text, 422, "invalid_request")
        assert message.startswith("form field 'file' must be the uploaded file: "), message
        nameless = (
            b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nm\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename=""\r\n\r\n'
            b"not a model\r\n--b--\r\n"
        )
        message = _error(
            c.post("/v1/models", content=nameless, headers=broken), 422, "unsupported_model_format"
        )
        assert message.startswith("'model' is neither"), message  # no temporary file's name
    assert (server.rows(), server.files()) == (before_rows, before_files)


def test_oversize_upload(small_server: Server, digits: Digits) -> None:
    assert digits.onnx.stat().st_size > 4096
    too_large = (413, "upload_too_large")
    _bad_input(small_server, lambda c: _upload_model(c, digits.onnx, "big"), *too_large)
    _bad_input(small_server, lambda c: _upload_data(c, digits.npz, "big", 1), *too_large)
