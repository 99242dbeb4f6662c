"""Errors over HTTP: the one table from error classes to statuses, and the handlers.

Every error response has the body ``{"error": {"code": ..., "message": ...}}``. MPQ
errors (:class:`engine.errors.MPQError` and :mod:`service.errors`) keep their code and
message; FastAPI's request validation becomes ``invalid_request``; anything else is an
internal error logged here with its traceback and answered with a generic message.

The status of an error is found by walking its class's MRO through :data:`STATUS`, a
table keyed by class: a subclass inherits its base's status unless it has an entry of
its own, and no code is spelled here as a string (the engine's classes know nothing of
HTTP; this table is where they meet it).

Statuses: a request the service understood but whose content it refuses (an
unacceptable model or data file, a bad name, a malformed form) is **422**, like
FastAPI's own validation errors, so that clients need one rule for "fix your
input". A bare :class:`MPQError` is 400; a test checks that every subclass has an
entry of its own or below a base other than :class:`MPQError`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from engine.errors import (
    ArchiveLimitError,
    FileMissingError,
    ImportFailedError,
    InvalidDataError,
    InvalidIRError,
    InvalidPlanError,
    ModelFormatError,
    MPQError,
    OnnxExternalDataError,
    SandboxUnavailableError,
    TrainingModeError,
    UnsafeArchiveError,
    UnsupportedExportError,
    UnsupportedOpsError,
)
from service.errors import (
    BrokerUnavailableError,
    ConflictError,
    DatabaseSchemaError,
    DatabaseUnavailableError,
    InternalError,
    InvalidNameError,
    InvalidRequestError,
    InvalidSettingsError,
    MethodNotAllowedError,
    NotFoundError,
    QueueUnavailableError,
    UnauthorizedError,
    UploadTooLargeError,
)

__all__ = [
    "STATUS",
    "error_response",
    "http_status",
    "install_error_handlers",
    "status_entry",
]

log = logging.getLogger("service.api")

_UNPROCESSABLE: tuple[type[MPQError], ...] = (
    # the upload is not an acceptable model file (ModelFormatError: pickles, TorchScript...)
    ModelFormatError,
    ArchiveLimitError,
    UnsafeArchiveError,
    UnsupportedOpsError,
    TrainingModeError,
    InvalidIRError,
    OnnxExternalDataError,
    ImportFailedError,
    # the data file does not fit the model (every InvalidDataError)
    InvalidDataError,
    # other content errors
    InvalidPlanError,
    UnsupportedExportError,
    InvalidNameError,
    InvalidRequestError,
    FileMissingError,
)

STATUS: dict[type[MPQError], int] = {
    MPQError: 400,
    **dict.fromkeys(_UNPROCESSABLE, 422),
    UnauthorizedError: 401,
    NotFoundError: 404,
    MethodNotAllowedError: 405,
    ConflictError: 409,
    UploadTooLargeError: 413,
    InternalError: 500,
    InvalidSettingsError: 500,
    BrokerUnavailableError: 503,
    DatabaseSchemaError: 503,
    DatabaseUnavailableError: 503,
    QueueUnavailableError: 503,
    SandboxUnavailableError: 503,
}
"""HTTP status per error class: the one place where errors meet statuses."""

# Starlette's own HTTP errors (no route, wrong method) in the same shape.
_HTTP_ERRORS: dict[int, type[MPQError]] = {
    401: UnauthorizedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
INTERNAL_MESSAGE = "internal error; it has been logged. Try again, or report it if it persists"


def status_entry(error: type[MPQError]) -> type[MPQError]:
    """The class whose :data:`STATUS` entry decides ``error``'s status (first in its MRO)."""
    return next(c for c in error.__mro__ if c in STATUS)


def http_status(error: type[MPQError]) -> int:
    """The HTTP status of errors of class ``error``."""
    return STATUS[status_entry(error)]


def error_response(code: str, message: str, *, status: int) -> JSONResponse:
    """The JSON error response ``{"error": {"code", "message"}}`` with ``status``."""
    headers = {"WWW-Authenticate": "Bearer"} if code == UnauthorizedError.code else None
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    """Render every error ``app`` can raise in the one JSON shape."""
    app.add_exception_handler(MPQError, _mpq_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)


async def _mpq_error(request: Request, exc: Any) -> JSONResponse:
    assert isinstance(exc, MPQError)
    return error_response(exc.code, exc.message, status=http_status(type(exc)))


async def _validation_error(request: Request, exc: Any) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        problems.append(f"{where}: {err.get('msg', 'invalid')}")
    message = "invalid request: " + "; ".join(problems)
    return error_response(
        InvalidRequestError.code, message, status=http_status(InvalidRequestError)
    )


async def _http_error(request: Request, exc: Any) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    known = _HTTP_ERRORS.get(exc.status_code)
    code = "http_error" if known is None else known.code
    message, headers = str(exc.detail), dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
        message = (
            f"{request.method} is not allowed on {request.url.path}; it answers {headers['Allow']}"
        )
    response = error_response(code, message, status=exc.status_code)
    response.headers.update(headers)
    return response


def _allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a 405: every method some route answers on the request's path.

    Starlette names only the methods of the first route whose path matched, so a path
    served by two routes (``GET`` and ``POST /v1/jobs``) would be under-reported (RFC 9110
    15.5.6); each method is tried against the app's routes instead.
    """
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]
    return ", ".join(allowed)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    return error_response(InternalError.code, INTERNAL_MESSAGE, status=http_status(InternalError))
