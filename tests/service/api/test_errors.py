"""Errors over HTTP: the status table derived from the classes, and the handlers in process."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import engine.errors
import service.errors
from engine.errors import InvalidDataError, MissingInputsError, ModelFormatError, MPQError
from service.api.errors import STATUS, http_status, status_entry
from service.errors import NotFoundError, QueueUnavailableError, UnauthorizedError
from service.main import create_app
from service.settings import Settings


def _subclasses(cls: type[MPQError]) -> list[type[MPQError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_error_class_has_a_status_and_a_code_of_its_own() -> None:
    errors = _subclasses(MPQError)
    modules = {e.__module__ for e in errors}
    assert {"engine.errors", "service.errors"} <= modules
    for module in (engine.errors, service.errors):  # everything exported is an error class
        assert {getattr(module, n) for n in module.__all__} <= {MPQError, *errors}
    for error in errors:
        # an entry of its own or of a base below MPQError (a bare MPQError is 400)
        assert status_entry(error) is not MPQError, error
        assert 400 <= http_status(error) < 600, error
    codes = [e.code for e in (MPQError, *errors)]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)


def test_a_status_is_inherited_unless_the_class_has_its_own() -> None:
    assert http_status(MissingInputsError) == http_status(InvalidDataError) == 422
    assert status_entry(MissingInputsError) is InvalidDataError
    assert status_entry(ModelFormatError) is ModelFormatError
    assert http_status(MPQError) == 400
    assert (http_status(UnauthorizedError), http_status(NotFoundError)) == (401, 404)
    assert http_status(QueueUnavailableError) == 503
    assert all(isinstance(k, type) and issubclass(k, MPQError) for k in STATUS)


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
        # answered outside the middleware, yet with the security headers
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
        assert "RuntimeError" in caplog.text
        missing = client.get("/nowhere")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        unready = client.get("/readyz")  # the database was never migrated
        assert unready.status_code == 503
        assert unready.json()["error"]["code"] == "database_schema"
