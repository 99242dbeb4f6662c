"""Multipart uploads: a ``multipart/form-data`` body streamed to a temporary blob.

:func:`receive_upload` parses the body as it arrives (python-multipart's push parser),
writing the one file part chunk by chunk to a temporary file in the blob directory while
hashing it, and refusing it with :class:`UploadTooLargeError` as soon as it passes
``max_bytes`` -- nothing is buffered whole in memory or spooled elsewhere. Small text
fields (``name``, ``model_id``) are kept in memory, each at most :data:`MAX_FIELD_BYTES`.
A body that sends nothing for ``read_timeout_s``, or that has averaged under
``min_rate_bps`` once it has run that long, is refused with :class:`UploadTimeoutError`:
a stalled or deliberately slow client (a byte every few seconds) must not hold its
upload slot forever. Whatever goes wrong, the temporary file is removed before the error
propagates; on
success the caller owns it (see :meth:`Upload.discard`): the routes hand its path to
the domain (:func:`service.domain.add_model`, :func:`service.domain.add_dataset`).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from service.blobs import BlobStore
from service.db.repos import MAX_ID
from service.errors import InvalidRequestError, UploadTimeoutError, UploadTooLargeError

__all__ = ["MAX_FIELD_BYTES", "MAX_PARTS", "Upload", "openapi_form", "receive_upload"]

MAX_FIELD_BYTES, MAX_PARTS = 64 * 1024, 16
"""The largest id a form field may give: a row id is a signed 64-bit integer."""
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")
# Room for the multipart framing around the file, when judging Content-Length up front.
FORM_OVERHEAD = 64 * 1024
_CALLBACKS = (
    "on_part_begin",
    "on_header_field",
    "on_header_value",
    "on_header_end",
    "on_headers_finished",
    "on_part_data",
    "on_part_end",
)


@dataclass
class Upload:
    """A received upload: text ``fields``, and the file at ``path`` in the blob directory.

    ``filename`` is the client's name for the file (informative only, never trusted);
    ``size`` and ``sha256`` describe the bytes received.
    """

    fields: dict[str, str]
    path: Path
    filename: str
    size: int
    sha256: str

    def text(self, name: str) -> str:
        """The text field ``name``; :class:`InvalidRequestError` if the form lacks it."""
        if name not in self.fields:
            raise InvalidRequestError(f"the form lacks the field {name!r}; add it")
        return self.fields[name]

    def integer(self, name: str) -> int:
        """The text field ``name`` as an id: ASCII digits (blanks around allowed), at most
        :data:`MAX_ID`; :class:`InvalidRequestError` otherwise.

        ``str.isdigit`` would accept Unicode digits such as ``'²'`` that ``int`` refuses.
        """
        value = self.text(name)
        digits = value.strip(" \t\r\n")
        if not _ASCII_DIGITS.fullmatch(digits) or int(digits) > MAX_ID:
            raise InvalidRequestError(
                f"form field {name!r} is {value[:40]!r}; give an id: a whole number "
                f"from 0 to {MAX_ID}, in the digits 0-9"
            )
        return int(digits)

    def discard(self) -> None:
        """Remove the temporary file (no error if it was moved or removed already)."""
        self.path.unlink(missing_ok=True)


@dataclass
class _Parse:
    """State of one multipart parse, fed by python-multipart's callbacks."""

    store: BlobStore
    file_field: str
    max_bytes: int
    fields: dict[str, str] = field(default_factory=dict)
    parts: int = 0
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    current: str | None = None  # name of the text field being read; None in the file part
    buffer: bytearray = field(default_factory=bytearray)
    out: IO[bytes] | None = None
    path: Path | None = None
    filename: str = ""
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise InvalidRequestError(f"the form has more than {MAX_PARTS} parts")
        self.headers.clear()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            if name == self.file_field:
                raise InvalidRequestError(
                    f"form field {name!r} must be the uploaded file: a part with a filename "
                    f'(Content-Disposition: form-data; name="{name}"; filename="model.pt2"), '
                    "not a text value"
                )
            if name in self.fields or name == self.current:
                raise InvalidRequestError(f"form field {name!r} must be a single text value")
            self.current = name
            self.buffer.clear()
            return
        if name != self.file_field or self.path is not None:
            raise InvalidRequestError(
                f"unexpected file part {name!r}: send exactly one file, as {self.file_field!r}"
            )
        self.current = None
        self.filename = options[b"filename"].decode("utf-8", "replace")
        self.path = self.store.new_temp()
        self.out = open(self.path, "wb")  # noqa: SIM115 -- closed in on_part_end or on error

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.out is None:
            self.buffer += chunk
            if len(self.buffer) > MAX_FIELD_BYTES:
                raise InvalidRequestError(
                    f"form field {self.current!r} exceeds {MAX_FIELD_BYTES} bytes"
                )
            return
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise _too_large(self.max_bytes)
        self.digest.update(chunk)
        self.out.write(chunk)

    def on_part_end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
            return
        try:
            self.fields[self.current or ""] = self.buffer.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError(f"form field {self.current!r} is not UTF-8") from None
        self.current = None

    def cleanup(self) -> None:
        if self.out is not None:
            self.out.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


async def receive_upload(
    request: Request,
    *,
    store: BlobStore,
    max_bytes: int,
    read_timeout_s: float,
    min_rate_bps: float = 0.0,
    file_field: str = "file",
) -> Upload:
    """Stream a ``multipart/form-data`` body into a temporary blob the caller must move or discard.

    Args:
        request: the incoming request (its body is consumed).
        store: the blob store whose ``tmp/`` directory receives the file.
        max_bytes: the largest file accepted.
        read_timeout_s: the longest wait for the next piece of the body, in seconds.
        min_rate_bps: the lowest average rate (bytes/s) of a body that has run for
            ``read_timeout_s`` or longer; 0 for none.
        file_field: the name of the (single, required) file part.

    Raises:
        UploadTooLargeError: the file (or the declared body) is larger than ``max_bytes``.
        UploadTimeoutError: the body sent nothing for ``read_timeout_s``, or arrives
            slower than ``min_rate_bps``.
        InvalidRequestError: not multipart, malformed, or no file part.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequestError(
            "send the upload as multipart/form-data with a file part "
            f"{file_field!r} (e.g. curl -F {file_field}=@model.pt2 -F name=...)"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + FORM_OVERHEAD:
        raise _too_large(max_bytes)
    state = _Parse(store=store, file_field=file_field, max_bytes=max_bytes)
    callbacks = {name: getattr(state, name) for name in _CALLBACKS}
    parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    try:
        async for chunk in _paced(request.stream(), read_timeout_s, min_rate_bps):
            parser.write(chunk)
        parser.finalize()
        if state.path is None or state.out is not None:
            raise InvalidRequestError(f"the form has no complete file part {file_field!r}")
    except BaseException as exc:
        state.cleanup()
        if type(exc).__module__.startswith("python_multipart"):
            raise InvalidRequestError(f"malformed multipart body: {exc}") from None
        if isinstance(exc, ClientDisconnect):  # nobody hears the answer; no 500 logged
            raise InvalidRequestError("the client closed the upload before its end") from None
        raise
    return Upload(state.fields, state.path, state.filename, state.size, state.digest.hexdigest())


async def _paced(
    chunks: AsyncIterator[bytes], timeout_s: float, min_rate_bps: float
) -> AsyncIterator[bytes]:
    """``chunks``, refused with :class:`UploadTimeoutError` when one takes over ``timeout_s``
    or, past ``timeout_s``, they average under ``min_rate_bps``."""
    start, received = time.monotonic(), 0
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise UploadTimeoutError(
                f"the upload sent nothing for {timeout_s:g} s and was abandoned; "
                "send it again over a steadier connection"
            ) from None
        received += len(chunk)
        elapsed = time.monotonic() - start
        if elapsed > timeout_s and received < min_rate_bps * elapsed:
            raise UploadTimeoutError(
                f"the upload arrived at {received / elapsed:.2g} bytes/s, under the minimum "
                f"of {min_rate_bps:g} bytes/s, and was abandoned; send it again over a "
                "faster connection"
            )
        yield chunk


def _too_large(max_bytes: int) -> UploadTooLargeError:
    return UploadTooLargeError(
        f"the upload exceeds the limit of {max_bytes} bytes (MPQ_MAX_UPLOAD_BYTES); "
        "send a smaller file or ask the operator to raise the limit"
    )


def openapi_form(**fields: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI ``requestBody`` of a multipart form with a binary ``file`` and ``fields``.

    The body is parsed by :func:`receive_upload` (streamed, not spooled), so FastAPI
    cannot derive this from the route's signature.
    """
    properties = {"file": {"type": "string", "format": "binary"}, **fields}
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    content = {"multipart/form-data": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}
