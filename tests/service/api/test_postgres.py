"""The upload flow against PostgreSQL (skips where the server is down, fails under CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Digits
from tests.service.api.conftest import Server, start_server
from tests.service.api.test_api import PICKLE, _bad_input, _error, _upload_data, _upload_model


@pytest.fixture
def pg_server(tmp_path: Path, postgres_url: str) -> Iterator[Server]:
    yield from start_server(tmp_path / "data", database_url=postgres_url)


def test_upload_flow_on_postgres(pg_server: Server, digits: Digits, tmp_path: Path) -> None:
    with pg_server.client(pg_server.key_a) as a, pg_server.client(pg_server.key_b) as b:
        assert a.get("/readyz").status_code == 200
        first = _upload_model(a, digits.pt2, "digits").json()
        second = _upload_model(a, digits.pt2, "digits").json()
        assert (first["version"], second["version"]) == (1, 2)
        assert first["sha256"] == second["sha256"]
        assert len(a.get(f"/v1/models/{first['id']}").json()["inventory"]["layers"]) == 4
        ds = _upload_data(a, digits.npz, "data", first["id"])
        assert ds.status_code == 201, ds.text
        assert a.get("/v1/models").json()["count"] == 2
        _error(b.get(f"/v1/models/{first['id']}"), 404, "not_found")
        _error(b.get(f"/v1/datasets/{ds.json()['id']}"), 404, "not_found")
    bad = tmp_path / "model.pt"
    bad.write_bytes(PICKLE)
    _bad_input(pg_server, lambda c: _upload_model(c, bad, "m"), 422, "torch_save_pickle")
    assert pg_server.rows() == (2, 1)
