"""The error handlers in process: an unexpected exception never leaks its traceback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings


def test_internal_error_is_generic_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(data_dir=tmp_path))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level(logging.ERROR):
        r = client.get("/boom")
        assert r.status_code == 500
        assert r.json()["error"]["code"] == "internal"
        assert "secret" not in r.text and "Traceback" not in r.text
        assert "RuntimeError" in caplog.text
        missing = client.get("/nowhere")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        unready = client.get("/readyz")  # the database was never migrated
        assert unready.status_code == 503
        assert unready.json()["error"]["code"] == "database_schema"
