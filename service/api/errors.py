"""Errors over HTTP: the one table from error codes to statuses, and the handlers.

Every error response has the body ``{"error": {"code": ..., "message": ...}}``. Domain
errors (:class:`engine.errors.MPQError`) keep their code and message; FastAPI's
request validation becomes ``invalid_request``; anything else is an internal error
logged here with its traceback and answered with a generic ``internal`` message.

Statuses: a request the service understood but whose content it refuses (an
unacceptable model or data file, a bad name, a malformed form) is **422**, like
FastAPI's own validation errors, so that clients need one rule for "fix your
input". 400 is kept for codes missing from the table, which a test forbids.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import MPQError

__all__ = ["DEFAULT_STATUS", "STATUS", "error_response", "install_error_handlers", "status_of"]

log = logging.getLogger("service.api")

_UNPROCESSABLE = (
    # the upload is not an acceptable model file
    "unsupported_model_format", "torch_save_pickle", "torchscript_archive", "corrupt_file",
    "archive_limits_exceeded", "unsafe_archive", "unsupported_ops", "training_mode",
    "invalid_ir", "onnx_external_data", "import_failed",
    # the data file does not fit the model
    "invalid_data", "unsupported_data_format", "pickled_data", "data_too_large", "empty_data",
    "missing_inputs", "unexpected_arrays", "data_dtype", "data_shape", "sample_count_mismatch",
    "non_finite_data", "invalid_labels",
    # other content errors
    "invalid_plan", "unsupported_export", "invalid_name", "invalid_request", "file_not_found",
)  # fmt: skip

STATUS: dict[str, int] = {
    **dict.fromkeys(_UNPROCESSABLE, 422),
    "unauthorized": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "upload_too_large": 413,
    "internal": 500,
    "broker_unavailable": 503,
    "database_schema": 503,
    "database_unavailable": 503,
    "queue_unavailable": 503,
    "invalid_settings": 500,
    "sandbox_unavailable": 503,
}
"""HTTP status of each error code: the one place where codes meet statuses."""

DEFAULT_STATUS = 400
INTERNAL_MESSAGE = "internal error; it has been logged. Try again, or report it if it persists"


def status_of(code: str) -> int:
    """The HTTP status for error ``code`` (:data:`DEFAULT_STATUS` if the table lacks it)."""
    return STATUS.get(code, DEFAULT_STATUS)


def error_response(code: str, message: str, *, status: int | None = None) -> JSONResponse:
    """The JSON error response ``{"error": {"code", "message"}}``; status from the table."""
    headers = {"WWW-Authenticate": "Bearer"} if code == "unauthorized" else None
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status_of(code) if status is None else status,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Render every error ``app`` can raise in the one JSON shape."""
    app.add_exception_handler(MPQError, _mpq_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)


async def _mpq_error(request: Request, exc: Any) -> JSONResponse:
    assert isinstance(exc, MPQError)
    return error_response(exc.code, exc.message)


async def _validation_error(request: Request, exc: Any) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response("invalid_request", "invalid request: " + "; ".join(problems))


async def _http_error(request: Request, exc: Any) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "http_error")
    return error_response(code, str(exc.detail), status=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path,
        exc_info=exc,
    )  # fmt: skip
    return error_response("internal", INTERNAL_MESSAGE)
