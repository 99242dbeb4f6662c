"""One delivery attempt over real sockets: the hard deadline, the body cap, no redirects,
no address outside the public internet and the allowed networks."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.outbound import parse_networks
from tests.workers.receiver import receiver
from workers.webhook_http import BODY_CAP, post

LOOPBACK = parse_networks("127.0.0.0/8,::1")
"""The receivers listen on 127.0.0.1: the tests allow loopback, as an operator would."""


def test_a_drip_feeding_receiver_is_cut_off_at_the_deadline() -> None:
    # a byte of the status line every 0.2 s: no per-read timeout of 1 s ever trips
    with receiver(mode="drip") as r:
        start = time.monotonic()
        answer = post(r.url, b"{}", {}, timeout_s=1.0, allowed_networks=LOOPBACK)
        took = time.monotonic() - start
    assert answer.status is None and answer.error is not None
    assert answer.error.startswith("timed out"), answer.error
    assert took < 1.5, took


def test_a_silent_receiver_is_cut_off_at_the_deadline() -> None:
    with receiver(mode="hang") as r:
        start = time.monotonic()
        answer = post(r.url, b"{}", {}, timeout_s=0.5, allowed_networks=LOOPBACK)
        took = time.monotonic() - start
    assert answer.status is None and (answer.error or "").startswith("timed out")
    assert took < 1.0, took


def test_the_answer_body_is_capped_and_statuses_pass_through() -> None:
    with receiver(fail_first=1) as r:
        first = post(r.url, b"{}", {"MPQ-Delivery": "1"}, timeout_s=5, allowed_networks=LOOPBACK)
        second = post(r.url, b"{}", {"MPQ-Delivery": "1"}, timeout_s=5, allowed_networks=LOOPBACK)
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
        answer = post(url, b"{}", {}, timeout_s=5, allowed_networks=LOOPBACK)
    assert answer.status == 307 and answer.error is None


def test_a_refused_connection_is_a_short_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        answer = post(
            f"http://127.0.0.1:{port}/", b"{}", {}, timeout_s=5, allowed_networks=LOOPBACK
        )
    assert answer.status is None and answer.error is not None
    assert "ConnectError" in answer.error and "\n" not in answer.error and len(answer.error) <= 200


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
def test_a_loopback_receiver_is_never_reached_unless_its_network_is_allowed(host: str) -> None:
    with receiver(fail_first=0) as r:
        url = r.url.replace("127.0.0.1", host)
        refused = post(url, b"{}", {"MPQ-Delivery": "1"}, timeout_s=5, allowed_networks=())
        assert refused.status is None and refused.error is not None
        assert "refused: " in refused.error and "is a loopback address" in refused.error
        assert r.got == []  # not a byte was sent: the check comes before the connection
        others = parse_networks("10.0.0.0/8")
        assert post(url, b"{}", {}, timeout_s=5, allowed_networks=others).status is None
        assert r.got == []
        if host != "[::ffff:127.0.0.1]":  # the receiver listens on IPv4 alone
            allowed = post(
                url, b"{}", {"MPQ-Delivery": "2"}, timeout_s=5, allowed_networks=LOOPBACK
            )
            assert allowed.status == 200 and len(r.got) == 1


def test_a_name_that_does_not_resolve_is_a_short_error() -> None:
    answer = post("http://mpq-no-such-host.invalid/", b"{}", {}, timeout_s=5, allowed_networks=())
    assert answer.status is None and "does not resolve" in (answer.error or ""), answer


def test_a_hanging_resolver_is_cut_off_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The system resolver takes no timeout; a lookup that hangs (a dead DNS server) must
    not hold the worker past the attempt's deadline."""
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(*args: Any, **kwargs: Any) -> Any:
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        began = time.monotonic()
        answer = post("http://hooks.example/", b"{}", {}, timeout_s=1, allowed_networks=())
        took = time.monotonic() - began
    finally:
        release.set()
    assert answer.status is None and "did not resolve within 1 s" in (answer.error or "")
    assert 0.9 < took < 3, took
