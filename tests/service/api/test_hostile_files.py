"""Small uploads that declare gigabytes: refused by what they declare, at a bounded memory cost.

Each file is built small on disk (tests/hostile.py) and uploaded to a real uvicorn. The API
must answer with the exact status and error code, keep no row and no blob, and its resident
memory must not grow by more than :data:`MAX_GROWTH_KIB` while it decides: the peak
(``VmHWM``, reset through ``/proc/<pid>/clear_refs`` before each upload) is compared with
the resident size before the upload. Before these bounds the same files took the API from
~0.5 GB to 1.1-3.3 GB, and the .npz was accepted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Digits
from tests.engine.io.importers.onnx.test_import import _external_model, _point_to
from tests.hostile import (
    npz_bomb,
    onnx_constant_of_shape,
    onnx_like,
    onnx_packed_varints,
    pt2_with_json_member,
    rss_kib,
    safetensors_nested,
)
from tests.service.api.conftest import Server, start_server

MAX_GROWTH_KIB = 100 * 1024
DIGITS_GIB = (4_194_304, 1, 8, 8)
"""1 GiB of float32 samples shaped like the digits model's input (the probe's file)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(tmp_path_factory.mktemp("api_hostile"))


@pytest.fixture(scope="module")
def model_id(server: Server, digits: Digits) -> int:
    with server.client(server.key_a) as c, open(digits.pt2, "rb") as f:
        r = c.post("/v1/models", files={"file": ("digits.pt2", f)}, data={"name": "digits"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _upload(
    server: Server, route: str, name: str, path: Path, fields: dict[str, str]
) -> tuple[httpx.Response, int]:
    """POST the file; return the response and the API's memory growth during it, in KiB."""
    pid = server.process.pid
    with server.client(server.key_a) as c:
        assert c.get("/healthz").status_code == 200
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to VmRSS
        before = rss_kib(pid)["VmRSS"]
        with open(path, "rb") as f:
            r = c.post(route, files={"file": (name, f)}, data=fields)
    growth = rss_kib(pid)["VmHWM"] - before
    print(f"{name}: {path.stat().st_size} bytes on disk, API peak growth {growth / 1024:.1f} MiB")
    return r, growth


def _refused(server: Server, r: httpx.Response, code: str, blobs: set[str]) -> str:
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    assert server.rows() == (1, 0) and server.files() == blobs
    message = str(error["message"])
    assert str(server.data_dir) not in message, message
    return message


@pytest.mark.parametrize(
    ("build", "name", "code"),
    [
        (lambda d, p: npz_bomb(p / "x.npz", shape=DIGITS_GIB), "probe.npz", "data_too_large"),
        (
            lambda d, p: safetensors_nested(p / "x.st"),
            "deep.safetensors",
            "unsupported_data_format",
        ),
    ],
    ids=["npz_1gib_zeros", "safetensors_nested_100000"],
)
def test_hostile_datasets_are_refused_cheaply(  # type: ignore[no-untyped-def]
    server: Server, model_id: int, digits: Digits, tmp_path: Path, build, name: str, code: str
) -> None:
    blobs = server.files()
    path = build(digits, tmp_path)
    r, growth = _upload(
        server, "/v1/datasets", name, path, {"name": "d", "model_id": str(model_id)}
    )
    message = _refused(server, r, code, blobs)
    assert repr(name) in message
    assert growth <= MAX_GROWTH_KIB


def test_the_npz_message_gives_the_declared_size_and_the_limit(
    server: Server, model_id: int, tmp_path: Path
) -> None:
    r, _ = _upload(
        server,
        "/v1/datasets",
        "probe.npz",
        npz_bomb(tmp_path / "x.npz", shape=DIGITS_GIB),
        {"name": "d", "model_id": str(model_id)},
    )
    message = r.json()["error"]["message"]
    assert str(2**30 + 128) in message and str(512 << 20) in message


@pytest.mark.parametrize(
    ("build", "name", "code"),
    [
        (
            lambda d, p: pt2_with_json_member(d.pt2, p / "x.pt2", mib=63),
            "json63.pt2",
            "unsafe_archive",
        ),
        (lambda d, p: onnx_like(p / "x.onnx", size=200 << 20), "big.onnx", "corrupt_file"),
        (
            lambda d, p: onnx_packed_varints(p / "x.onnx", mib=32),
            "varints.onnx",
            "archive_limits_exceeded",
        ),
        (
            lambda d, p: onnx_constant_of_shape(p / "x.onnx"),
            "fill.onnx",
            "archive_limits_exceeded",
        ),
    ],
    ids=[
        "pt2_63mib_json_member",
        "onnx_like_200mib",
        "onnx_32mib_packed_varints",
        "onnx_constant_of_shape_1gib",
    ],
)
def test_hostile_models_are_refused_cheaply(  # type: ignore[no-untyped-def]
    server: Server, model_id: int, digits: Digits, tmp_path: Path, build, name: str, code: str
) -> None:
    blobs = server.files()
    r, growth = _upload(server, "/v1/models", name, build(digits, tmp_path), {"name": "m"})
    _refused(server, r, code, blobs)
    assert growth <= MAX_GROWTH_KIB


def test_external_data_outside_gives_one_answer_whether_it_exists_or_not(
    server: Server, model_id: int, tmp_path: Path
) -> None:
    """No file-existence oracle: ``../../mpq.db`` exists beside the upload folder, the other not."""
    blobs = server.files()
    assert (server.data_dir / "mpq.db").is_file()
    answers = []
    for location in ("../../mpq.db", "../../nothing-here.db"):
        path, _ = _external_model(tmp_path / location.rsplit("/", 1)[-1])
        _point_to(path, location)
        r, _ = _upload(server, "/v1/models", "ext.onnx", path, {"name": "m"})
        message = _refused(server, r, "onnx_external_data", blobs)
        answers.append((r.status_code, message.replace(location, "<location>")))
    assert answers[0] == answers[1]
