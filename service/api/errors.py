"""Errors over HTTP: the one table from error classes to statuses, and the handlers.

Every error response has the body ``{"error": {"code": ..., "message": ...}}``. MPQ
errors (:class:`engine.errors.MPQError` and :mod:`service.errors`) keep their code and
message; FastAPI's request validation becomes ``invalid_request``, its message listing at
most :data:`MAX_PROBLEMS` problems (a large invalid body never makes a large answer);
Starlette's and FastAPI's own HTTP errors become MPQ errors too (:data:`_HTTP_ERRORS`:
no route, wrong method, a body that cannot be parsed, one over the size limit), so that
every code the API answers is a class with a :data:`STATUS` entry; anything else is an
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

Under the dashboard's prefix the same errors are rendered as pages (the renderer the
dashboard puts on ``app.state.page_errors``): same status, code and message.

Size: over 300 lines because the status table, the handlers and the messages of the
framework's own errors are one concept -- how an error becomes an answer -- and split
apart they would each need the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
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
from service.api.headers import relative_path, security_headers
from service.errors import (
    BodyTooLargeError,
    BrokerUnavailableError,
    BusyError,
    ConflictError,
    CsrfError,
    DatabaseBusyError,
    DatabaseSchemaError,
    DatabaseUnavailableError,
    InternalError,
    InvalidAliasError,
    InvalidNameError,
    InvalidRequestError,
    InvalidScheduleError,
    InvalidSettingsError,
    MethodNotAllowedError,
    NotFoundError,
    QueueUnavailableError,
    QuotaExceededError,
    RateLimitedError,
    UnauthorizedError,
    UploadTimeoutError,
    UploadTooLargeError,
)

__all__ = [
    "MAX_MESSAGE_CHARS",
    "MAX_PROBLEMS",
    "STATUS",
    "error_response",
    "http_status",
    "install_error_handlers",
    "status_entry",
    "validation_message",
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
    InvalidAliasError,
    InvalidScheduleError,
)

STATUS: dict[type[MPQError], int] = {
    MPQError: 400,
    **dict.fromkeys(_UNPROCESSABLE, 422),
    UnauthorizedError: 401,
    CsrfError: 403,
    NotFoundError: 404,
    MethodNotAllowedError: 405,
    UploadTimeoutError: 408,
    ConflictError: 409,
    UploadTooLargeError: 413,
    BodyTooLargeError: 413,
    RateLimitedError: 429,
    QuotaExceededError: 429,
    InternalError: 500,
    InvalidSettingsError: 500,
    BrokerUnavailableError: 503,
    BusyError: 503,
    DatabaseSchemaError: 503,
    DatabaseUnavailableError: 503,
    QueueUnavailableError: 503,
    SandboxUnavailableError: 503,
}
"""HTTP status per error class: the one place where errors meet statuses."""

# Starlette's and FastAPI's own HTTP errors (no route, wrong method, an unreadable
# body, a body over the limit) as MPQ errors, answered with their STATUS entry.
_HTTP_ERRORS: dict[int, type[MPQError]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    413: BodyTooLargeError,
}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
INTERNAL_MESSAGE = "internal error; it has been logged. Try again, or report it if it persists"

MAX_PROBLEMS = 10
"""Validation problems listed in a message at most; the rest are counted ("and 3 more")."""

MAX_MESSAGE_CHARS = 4096
"""Longest message of a validation error; each problem is cut to a tenth of it."""

_PATH_CHARS = 120  # of a request path quoted in a message


def status_entry(error: type[MPQError]) -> type[MPQError]:
    """The class whose :data:`STATUS` entry decides ``error``'s status (first in its MRO)."""
    return next(c for c in error.__mro__ if c in STATUS)


def http_status(error: type[MPQError]) -> int:
    """The HTTP status of errors of class ``error``."""
    return STATUS[status_entry(error)]


def error_response(
    code: str, message: str, *, status: int, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON error response ``{"error": {"code", "message"}}`` with ``status``.

    Args:
        code: the error's stable code.
        message: what was wrong and how to fix it.
        status: the HTTP status (``http_status`` of the error's class).
        headers: extra response headers (``Allow`` of a 405, ``Retry-After``...).
    """
    headers = dict(headers or {})
    if code == UnauthorizedError.code:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def validation_message(errors: Sequence[Any]) -> str:
    """One message listing pydantic's validation ``errors``, at most :data:`MAX_PROBLEMS`.

    Each problem reads ``field.path: what is wrong``, cut to a tenth of
    :data:`MAX_MESSAGE_CHARS`; further problems are counted, not listed, so that a large
    invalid body cannot make a large response.
    """
    cut = MAX_MESSAGE_CHARS // 10
    problems = []
    for err in errors[:MAX_PROBLEMS]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        problems.append(_shorten(f"{where}: {err.get('msg', 'invalid')}", cut))
    message = "invalid request: " + "; ".join(problems)
    if len(errors) > MAX_PROBLEMS:
        message += f"; and {len(errors) - MAX_PROBLEMS:,} more"
    return _shorten(message, MAX_MESSAGE_CHARS)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def install_error_handlers(app: FastAPI) -> None:
    """Render every error ``app`` can raise in the one JSON shape."""
    app.add_exception_handler(MPQError, _mpq_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(PoolTimeoutError, _pool_timeout)
    app.add_exception_handler(Exception, _internal_error)


PageErrors = Callable[..., Response]
"""Renders an error for a dashboard page: ``(request, code, message, *, status, headers)``."""


def _answer(
    request: Request,
    code: str,
    message: str,
    *,
    status: int,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error as JSON, or as a page under the dashboard's prefix (``app.state.page_errors``).

    The dashboard installs its renderer there (:mod:`service.api.pages`); the API's
    answers never depend on it.
    """
    pages: tuple[str, PageErrors] | None = getattr(request.app.state, "page_errors", None)
    if pages is not None:
        prefix, render = pages
        path = relative_path(request.scope)
        if path == prefix or path.startswith(prefix + "/"):
            return render(request, code, message, status=status, headers=dict(headers or {}))
    return error_response(code, message, status=status, headers=headers)


async def _mpq_error(request: Request, exc: Any) -> Response:
    assert isinstance(exc, MPQError)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, BusyError) else None
    return _answer(request, exc.code, exc.message, status=http_status(type(exc)), headers=headers)


async def _pool_timeout(request: Request, exc: Any) -> Response:
    # Every pooled connection stayed checked out for db_pool_timeout_s: the API is
    # saturated, not broken -- tell the client to come back rather than answer 500.
    settings = request.app.state.settings
    busy = DatabaseBusyError(
        "the service is busy: every database connection is in use; retry in a few seconds",
        retry_after_s=settings.busy_retry_after_s,
    )
    return await _mpq_error(request, busy)


async def _validation_error(request: Request, exc: Any) -> Response:
    assert isinstance(exc, RequestValidationError)
    message = validation_message(exc.errors())
    return _answer(
        request, InvalidRequestError.code, message, status=http_status(InvalidRequestError)
    )


async def _http_error(request: Request, exc: Any) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    error = _HTTP_ERRORS.get(exc.status_code)
    if error is None:  # no other status is raised today; keep the shape if one appears
        error = InvalidRequestError if exc.status_code < 500 else InternalError
    message, headers = _http_message(request, exc, error), dict(exc.headers or {})
    if error is MethodNotAllowedError:
        headers["Allow"] = _allowed_methods(request)
        path = _shorten(relative_path(request.scope), _PATH_CHARS)
        message = f"{request.method} is not allowed on {path}; it answers {headers['Allow']}"
    return _answer(request, error.code, message, status=http_status(error), headers=headers)


def _http_message(request: Request, exc: StarletteHTTPException, error: type[MPQError]) -> str:
    path = _shorten(relative_path(request.scope), _PATH_CHARS)
    if error is NotFoundError:
        return f"no route at {path!r}; the API's routes are listed at /docs (no trailing slash)"
    if error is InvalidRequestError:
        cause = exc.__cause__
        if isinstance(cause, RecursionError):
            return (
                "the JSON body nests arrays or objects too deeply to be parsed (about 1,000 "
                "levels); send a flatter body"
            )
        if isinstance(cause, UnicodeDecodeError):
            return "the JSON body is not valid UTF-8 text; send it encoded as UTF-8"
        return "the request body could not be read; send JSON with Content-Type: application/json"
    if error is InternalError:
        return INTERNAL_MESSAGE
    return str(exc.detail)


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


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error(
        "unhandled %s on %s %s",
        type(exc).__name__,
        request.method,
        request.url.path,
        exc_info=exc,
    )
    # Answered outside every middleware (Starlette's ServerErrorMiddleware), hence the
    # security headers here.
    headers = security_headers(relative_path(request.scope))
    return _answer(
        request,
        InternalError.code,
        INTERNAL_MESSAGE,
        status=http_status(InternalError),
        headers=headers,
    )
