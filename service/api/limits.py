"""The size limit of request bodies other than file uploads, enforced while they arrive.

A JSON body is parsed and validated in the event loop, so its size bounds how long one
request can stall every other one (an 800 KB body used to block ``/healthz`` for
seconds) and how much memory it takes. :class:`BodyLimitMiddleware` refuses a body
larger than ``max_json_bytes`` with 413 ``body_too_large``:

- when ``Content-Length`` says so, at once, before the app runs (no byte is read);
- when the body arrives chunked (no ``Content-Length``), as soon as the bytes received
  pass the limit: the app's next read raises :class:`BodyTooLarge`, an HTTP error the
  app's handlers render, and reading stops there.

File uploads are exempt: a route that declares a ``multipart/form-data`` request body
(its ``openapi_extra``: :data:`service.api.uploads.MODEL_FORM` or ``DATASET_FORM``)
streams its file to disk under its own limit (``max_upload_bytes``, in
:mod:`service.api.multipart`). The declaration decides, not the OpenAPI document: the
dashboard's upload forms (``/ui/models/upload``, ``/ui/datasets/upload``) are left out of
the document but declare the same bodies. A multipart body sent to any other route
counts as a JSON body, since that route reads it into memory.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_response, http_status
from service.errors import BodyTooLargeError

__all__ = ["BodyLimitMiddleware", "BodyTooLarge", "accepts_upload", "too_large_message"]

UPLOAD_TYPE = "multipart/form-data"


class BodyTooLarge(HTTPException):
    """Raised by the limited ``receive`` once a body passes the limit; rendered as 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(max_bytes))


def too_large_message(max_bytes: int) -> str:
    """The message of a 413 ``body_too_large`` for the limit ``max_bytes``."""
    return (
        f"the request body is larger than {max_bytes:,} bytes, the limit for JSON bodies "
        "(setting max_json_bytes); send a smaller body, or upload files as "
        "multipart/form-data to the upload routes"
    )


def accepts_upload(route: Any) -> bool:
    """Whether ``route`` declares a ``multipart/form-data`` request body (a file upload)."""
    extra = getattr(route, "openapi_extra", None) or {}
    content = extra.get("requestBody", {}).get("content", {})
    return UPLOAD_TYPE in content


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None  # the server refuses a malformed Content-Length before the app


def _is_multipart(scope: Scope) -> bool:
    content_type = Headers(scope=scope).get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == UPLOAD_TYPE


class BodyLimitMiddleware:
    """ASGI middleware refusing request bodies over ``max_bytes`` (413 ``body_too_large``).

    Args:
        app: the ASGI app to wrap.
        max_bytes: the largest body accepted, in bytes (``Settings.max_json_bytes``).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes and not _is_multipart(scope):
            await self._refuse(scope, receive, send)
            return
        received = 0
        limited: bool | None = None  # decided at the first read, once the route is known
        started = False

        async def limited_receive() -> Message:
            nonlocal received, limited
            if limited is None:
                limited = not accepts_upload(scope.get("route"))
                if limited and length is not None and length > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            message = await receive()
            if limited and message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def send_started(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, send_started)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The client may still be sending: the server reads and drops the rest.
        response = error_response(
            BodyTooLargeError.code,
            too_large_message(self.max_bytes),
            status=http_status(BodyTooLargeError),
        )
        await response(scope, receive, send)
