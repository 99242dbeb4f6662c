"""A whole night of nightly compression, with real processes.

`mpq up` (the API, a worker and a beat) plus a second `mpq beat` on the same database; a
webhook receiver that fails every delivery's first attempt and checks every signature; a
schedule firing every minute on the digits model. Between two runs a new version of the
model is uploaded -- the same network trained one epoch more. The second run warm-starts
from the first, its regression field is what the two results' figures say, each webhook
event arrives exactly once and verifies, each due time made one job despite two beats, and
`mpq submit --wait` exits with the documented codes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.commands.test_up import KEY_LINE, mpq_up
from tests.conftest import ROOT

SECRET = "a-nightly-webhook-secret-0123456789"
RUN_S = 240  # a due time's job, from firing to succeeded, on a busy two-core machine
FAST = {
    "MPQ_BEAT_INTERVAL_S": "1",
    "MPQ_WEBHOOK_BACKOFF_S": "0.5",
    "MPQ_WEBHOOK_MAX_ATTEMPTS": "5",
    "MPQ_RECOVERY_INTERVAL_S": "1",
}


class Receiver:
    """A real HTTP server receiving webhooks: first attempt of each delivery answered 500."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        self.accepted: list[dict[str, Any]] = []
        self.bad: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                delivery = self.headers.get("MPQ-Delivery", "")
                with outer.lock:
                    if not verify(self.headers.get("MPQ-Signature", ""), body):
                        outer.bad.append(delivery)
                    n = outer.attempts[delivery] = outer.attempts.get(delivery, 0) + 1
                    if n > 1:
                        outer.accepted.append(json.loads(body))
                self.send_response(500 if n == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mpq"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[tuple[str, int]]:
        with self.lock:
            return sorted((d["event"], d["job"]["id"]) for d in self.accepted)


def verify(header: str, body: bytes, *, tolerance_s: float = 300) -> bool:
    """The receiver's check, as docs/webhooks.md gives it."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t, sig = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or abs(time.time() - int(t)) > tolerance_s:
        return False
    expected = hmac.new(SECRET.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, sig)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN trained one epoch more than the `digits` fixture's (same seed)."""
    out = tmp_path_factory.mktemp("digits-31")
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits.py"), "--out", str(out), "--epochs", "31"],
        check=True,
        capture_output=True,
    )
    return out / "digits.pt2"


def _wait(what: str, timeout: float, probe: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.5)


def _beat(data_dir: Path, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    env |= {"MPQ_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **extra}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "commands", "beat"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def night(tmp_path: Path) -> Iterator[tuple[Any, httpx.Client, Receiver, str]]:
    receiver = Receiver()
    data = tmp_path / "data"
    with mpq_up(data, **FAST) as up:
        key = KEY_LINE.match(up.read_until("API key: "))
        assert key is not None, up.lines
        up.read_until("MPQ is serving at ")
        second = _beat(data, tmp_path / "beat2.log", **FAST)
        headers = {"Authorization": f"Bearer {key[1]}"}
        try:
            with httpx.Client(base_url=up.url, headers=headers, timeout=60) as client:
                yield up, client, receiver, key[1]
        finally:
            second.terminate()
            second.wait(timeout=30)
            receiver.server.shutdown()
