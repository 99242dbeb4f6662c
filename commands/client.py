"""The REST API from the command line: one HTTP client, its settings and its errors.

``mpq submit`` and ``mpq jobs`` talk to a running service over HTTP only (httpx); they
never open its database. The service is found by ``MPQ_URL`` (default
:data:`DEFAULT_URL`) and the team by its key ``MPQ_API_KEY``; ``--url`` and
``--api-key`` override both.

Every failure is a :class:`ClientError` with a stable ``code`` and the exit status a
pipeline acts on (:data:`EXIT_CODES`): an API answer 4xx is the caller's mistake (status
2, with the API's own code and message), no answer, a 5xx or a deadline passed is the
service's trouble (status 1). These codes are the client's, not the service's error
hierarchy's: they are never HTTP answers, so they are documented with the exit statuses
in ``docs/pipelines.md`` and not in ``docs/errors.md``.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = [
    "DEFAULT_URL",
    "EXIT_CANCELLED",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_MISSED",
    "EXIT_OK",
    "EXIT_SERVICE",
    "EXIT_USAGE",
    "Client",
    "ClientError",
    "add_connection_flags",
    "client_from_args",
    "reports_errors",
]

DEFAULT_URL = "http://127.0.0.1:8000"
REQUEST_TIMEOUT_S = 60.0
"""Seconds one request may wait for a byte (an upload's import answers when it is done)."""
BUSY_RETRIES = 5
"""Times a request answered 429 or 503 with ``Retry-After`` (``rate_limited``, ``busy``,
``database_busy``) is sent again, that many seconds later; a quota is not retried."""
MAX_RETRY_AFTER_S = 30.0

EXIT_OK = 0
EXIT_SERVICE = 1
EXIT_USAGE = 2
EXIT_MISSED = 3
EXIT_FAILED = 4
EXIT_CANCELLED = 5
EXIT_CODES = {
    EXIT_OK: "the job succeeded and met its targets",
    EXIT_SERVICE: "the service is unreachable, answered 5xx, or --wait-timeout passed",
    EXIT_USAGE: "bad flags or input, or the API refused the request (4xx)",
    EXIT_MISSED: "the job succeeded but missed its targets (result.met_targets is false)",
    EXIT_FAILED: "the job failed",
    EXIT_CANCELLED: "the job was cancelled",
}
"""Exit status -> meaning, for ``mpq submit`` and ``mpq jobs`` (docs/pipelines.md)."""


class ClientError(Exception):
    """A failure of a client command: a stable ``code``, a message and an exit status."""

    def __init__(self, code: str, message: str, *, exit_status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code, self.message, self.exit_status = code, message, exit_status


def reports_errors(command: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Wrap a command so a :class:`ClientError` prints ``error[code]: message`` and exits."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ClientError as exc:
            print(f"error[{exc.code}]: {exc.message}", file=sys.stderr, flush=True)
            return exc.exit_status

    return run


def add_connection_flags(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--api-key``, overriding ``MPQ_URL`` and ``MPQ_API_KEY``."""
    parser.add_argument("--url", help=f"the service (default: MPQ_URL or {DEFAULT_URL})")
    parser.add_argument("--api-key", help="the team's API key (default: MPQ_API_KEY)")


def client_from_args(args: argparse.Namespace) -> Client:
    """The client of ``--url``/``MPQ_URL`` with ``--api-key``/``MPQ_API_KEY``.

    Raises:
        ClientError: no key given (``missing_api_key``, status 2).
    """
    url = args.url or os.environ.get("MPQ_URL") or DEFAULT_URL
    key = args.api_key or os.environ.get("MPQ_API_KEY")
    if not key:
        raise ClientError(
            "missing_api_key",
            "no API key: set MPQ_API_KEY or pass --api-key. `mpq up` prints a first key "
            "when it creates the database; make another with "
            "`mpq admin create-key --team default` on the service's machine",
        )
    return Client(url, key)


class Client:
    """An HTTP client of one service, as one team (``Authorization: Bearer <key>``)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "mpq-cli"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> Any:
        """``GET path`` with the non-None ``params``; the JSON answer."""
        query = {k: v for k, v in params.items() if v is not None}
        return self._send("GET", path, params=query).json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """``POST path`` with a JSON ``body``; the JSON answer."""
        return self._send("POST", path, json=body).json()

    def upload(self, path: str, file: Path, **fields: str) -> Any:
        """``POST path`` as a multipart form: ``file`` and the text ``fields``."""

        def send() -> httpx.Response:
            with file.open("rb") as f:
                files = {"file": (file.name, f, "application/octet-stream")}
                return self._http.post(path, files=files, data=fields)

        return self._checked(send, f"POST {path}").json()

    def download(self, path: str, out: IO[bytes], on_chunk: Callable[[bytes], None]) -> None:
        """Stream ``GET path``'s body into ``out``, passing each chunk to ``on_chunk``."""

        def send() -> httpx.Response:
            with self._http.stream("GET", path) as response:
                if response.status_code == 200:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        on_chunk(chunk)
                else:
                    response.read()
                return response

        self._checked(send, f"GET {path}")

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self._checked(lambda: self._http.request(method, path, **kw), f"{method} {path}")

    def _checked(self, send: Callable[[], httpx.Response], what: str) -> httpx.Response:
        """``send()``'s answer if 2xx (or 3xx); busy answers are retried after ``Retry-After``.

        Raises:
            ClientError: no answer (``service_unreachable``) or 5xx (status 1); 4xx
                (the API's code and message, status 2).
        """
        for attempt in range(BUSY_RETRIES + 1):
            try:
                response = send()
            except httpx.TimeoutException:
                raise ClientError(
                    "service_unreachable",
                    f"{what} at {self.url} did not answer in time; check that the service "
                    "is up (MPQ_URL) and try again",
                    exit_status=EXIT_SERVICE,
                ) from None
            except httpx.TransportError as exc:
                raise ClientError(
                    "service_unreachable",
                    f"cannot reach the service at {self.url} ({type(exc).__name__}: {exc}); "
                    "start it (`mpq up`) or point MPQ_URL / --url at it",
                    exit_status=EXIT_SERVICE,
                ) from None
            if response.status_code < 400:
                return response
            if _retryable(response) and attempt < BUSY_RETRIES:
                time.sleep(_retry_after(response))
                continue
            raise _api_error(response, what)
        raise AssertionError("unreachable")  # the last attempt returns or raises


def _retryable(response: httpx.Response) -> bool:
    return response.status_code in (429, 503) and "Retry-After" in response.headers


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(max(float(response.headers.get("Retry-After", "1")), 0.5), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


def _api_error(response: httpx.Response, what: str) -> ClientError:
    """The API's ``{"error": {"code", "message"}}`` as a :class:`ClientError`."""
    status = response.status_code
    try:
        body = response.json()["error"]
        code, message = str(body["code"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        code = "http_error" if status < 500 else "server_error"
        message = f"{what} answered {status}: {response.text[:200]!r}"
    if status >= 500:
        return ClientError(code, f"{message} (HTTP {status})", exit_status=EXIT_SERVICE)
    return ClientError(code, message, exit_status=EXIT_USAGE)
