"""A real local webhook receiver: a threaded ``http.server`` in the test process.

It checks each request's signature with the verifier from docs/webhooks.md, records
what it got, and answers by mode: ``fail_first`` 500s per delivery id then 200, or
``hang`` (reads the request, never answers), or ``drip`` (sends its status line a byte
at a time, forever).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.service.domain.test_webhooks import docs_verifier

__all__ = ["Got", "Receiver", "receiver"]


@dataclass(frozen=True)
class Got:
    """One request the receiver read."""

    event: str
    delivery: int
    payload: dict[str, Any]
    verified: bool
    headers: dict[str, str]
    status: int | None
    """What it answered (None: nothing, in ``hang`` and ``drip`` modes)."""
    at: float
    """When it arrived (``time.time()``)."""


@dataclass
class Receiver:
    """What the server behind ``url`` does and has received."""

    secret: str = ""
    mode: str = "fail_first"
    fail_first: int = 2
    got: list[Got] = field(default_factory=list)
    tries: dict[int, int] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answered(self, event: str | None = None) -> list[Got]:
        """The requests answered 200 (of ``event``)."""
        with self.lock:
            return [g for g in self.got if g.status == 200 and event in (None, g.event)]


def _handler(state: Receiver) -> type[BaseHTTPRequestHandler]:
    verify = docs_verifier()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            delivery = int(self.headers.get("MPQ-Delivery", "0"))
            with state.lock:
                state.tries[delivery] = n = state.tries.get(delivery, 0) + 1
                code = 500 if n <= state.fail_first else 200
                state.got.append(
                    Got(
                        self.headers.get("MPQ-Event", ""),
                        delivery,
                        json.loads(body),
                        verify(state.secret, body, self.headers.get("MPQ-Signature", "")),
                        dict(self.headers),
                        code if state.mode == "fail_first" else None,
                        time.time(),
                    )
                )
            if state.mode == "hang":
                state.stop.wait()
                return
            if state.mode == "drip":
                for byte in b"HTTP/1.1 200 OK\r\n":
                    if state.stop.wait(0.2):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                state.stop.wait()
                return
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"x" * 100_000 if code == 200 else b"try again later\n")

    return Handler


@contextmanager
def receiver(**kw: Any) -> Iterator[Receiver]:
    """Serve a :class:`Receiver` on a free port of 127.0.0.1; stop it afterwards."""
    state = Receiver(**kw)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
