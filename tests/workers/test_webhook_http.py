"""One delivery attempt over real sockets: the hard deadline, the body cap, no redirects."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.workers.receiver import receiver
from workers.webhook_http import BODY_CAP, post


def test_a_drip_feeding_receiver_is_cut_off_at_the_deadline() -> None:
    # a byte of the status line every 0.2 s: no per-read timeout of 1 s ever trips
    with receiver(mode="drip") as r:
        start = time.monotonic()
        answer = post(r.url, b"{}", {}, timeout_s=1.0)
        took = time.monotonic() - start
    assert answer.status is None and answer.error is not None
    assert answer.error.startswith("timed out"), answer.error
    assert took < 1.5, took


def test_a_silent_receiver_is_cut_off_at_the_deadline() -> None:
    with receiver(mode="hang") as r:
        start = time.monotonic()
        answer = post(r.url, b"{}", {}, timeout_s=0.5)
        took = time.monotonic() - start
    assert answer.status is None and (answer.error or "").startswith("timed out")
    assert took < 1.0, took


def test_the_answer_body_is_capped_and_statuses_pass_through() -> None:
    with receiver(fail_first=1) as r:
        first = post(r.url, b"{}", {"MPQ-Delivery": "1"}, timeout_s=5)
        second = post(r.url, b"{}", {"MPQ-Delivery": "1"}, timeout_s=5)
    assert (first.status, first.body) == (500, b"try again later\n")
    assert second.status == 200 and second.body == b"x" * BODY_CAP


class _Redirect(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(307)
        self.send_header("Location", "http://127.0.0.1:1/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def _redirecting() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_redirects_are_answers_not_followed() -> None:
    with _redirecting() as url:
        answer = post(url, b"{}", {}, timeout_s=5)
    assert answer.status == 307 and answer.error is None


def test_a_refused_connection_is_a_short_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        answer = post(f"http://127.0.0.1:{port}/", b"{}", {}, timeout_s=5)
    assert answer.status is None and answer.error is not None
    assert "ConnectError" in answer.error and "\n" not in answer.error and len(answer.error) <= 200
