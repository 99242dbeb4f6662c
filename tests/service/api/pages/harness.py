"""Dashboard test harness: Debian's chromium through Playwright, screenshots, a real ``mpq up``.

* :func:`browser`: one chromium per test module (``/usr/bin/chromium``, no sandbox:
  the tests may run as root in a container). Where chromium or Playwright is missing the
  browser tests skip, except under CI (``CI=true``), where they fail.
* :func:`shoot`: a full-page screenshot into ``$MPQ_SCREENSHOT_DIR`` (default
  ``build/screenshots`` in the repository, git-ignored), for a person to look at.
* :func:`up_stack`: ``mpq up`` (migrations, the API and a worker, as users run it) over a
  fresh data directory on a free port, with two teams made as ``mpq admin`` makes them
  (its code, in this process): ``team-a`` and ``team-b``, a key each.
* :func:`sign_in_form`: sign in over HTTP as a browser does, for tests without a browser.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.api.conftest import ROOT, free_port, team_keys
from tests.service.api.pages.html import csrf_of

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_DIR = ROOT / "build" / "screenshots"
STARTUP_S = 120.0
STOP_S = 30.0


def _require_browser() -> None:
    """Skip where chromium or Playwright is missing; under CI, fail instead."""
    missing = [
        what
        for what, ok in (
            (f"chromium ({CHROMIUM})", CHROMIUM.exists()),
            ("playwright (python)", importlib.util.find_spec("playwright") is not None),
        )
        if not ok
    ]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed; the browser tests need them"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium (Playwright ``Browser``) shared by a test module's tests.

    Module-scoped, not session-scoped: Playwright's sync API keeps an asyncio event loop
    running in the main thread while it is started, so every later test calling
    ``asyncio.run`` would fail ("cannot be called from a running event loop").
    """
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def screenshot_dir() -> Path:
    """Where :func:`shoot` writes: ``$MPQ_SCREENSHOT_DIR`` or ``build/screenshots``."""
    configured = os.environ.get("MPQ_SCREENSHOT_DIR")
    return Path(configured) if configured else SCREENSHOT_DIR


def shoot(page: Any, name: str) -> Path:
    """Save a full-page screenshot of ``page`` as ``<dir>/<name>.png``; its path."""
    out = screenshot_dir()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class UpStack:
    """A running ``mpq up`` and what the tests need to reach and inspect it."""

    url: str
    data_dir: Path
    database_url: str
    env: dict[str, str]
    key_a: str
    key_b: str
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def client(self, key: str | None) -> httpx.Client:
        """An HTTP client, with ``key`` as its bearer key when given."""
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def mpq(env: dict[str, str], *args: str) -> str:
    """Run ``mpq ARGS`` (``python -m commands``) under ``env``; its stdout (asserts success)."""
    proc = subprocess.run(
        [sys.executable, "-m", "commands", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"mpq {' '.join(args)}:\n{proc.stderr}"
    return proc.stdout


def start_up(data_dir: Path, **extra: str) -> Iterator[UpStack]:
    """Run ``mpq up --concurrency 1`` over ``data_dir``; make teams A and B; yield; stop it.

    ``mpq up`` leads a process group of its own, so that its API and worker go with it
    even if it has to be killed.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    database_url = f"sqlite:///{data_dir / 'mpq.db'}"
    env |= {
        "MPQ_DATA_DIR": str(data_dir),
        "MPQ_DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "up.log"
    log = open(log_path, "wb")  # noqa: SIM115 -- closed after mpq up stops
    command = ["up", "--host", "127.0.0.1", "--port", str(port), "--concurrency", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "commands", *command],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + STARTUP_S
        while f"MPQ is serving at {url}" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, f"mpq up exited:\n{log_path.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"mpq up not serving in {STARTUP_S:.0f} s"
            time.sleep(0.2)
        keys = team_keys(database_url, ("team-a", "team-b"), key_name="ui")
        yield UpStack(url, data_dir, database_url, env, keys[0], keys[1], proc, log_path, extra)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # mpq up forwards it to the API and the worker
            try:
                proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def up_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    """``mpq up`` (the API and one worker) shared by a test module, teams A and B."""
    yield from start_up(tmp_path_factory.mktemp("ui-up"))


def sign_in_form(c: httpx.Client, key: str, *, next_url: str = "/ui/jobs") -> httpx.Response:
    """Sign ``c`` in with ``key`` as a browser does: the form's cookie and token, then POST.

    Returns the POST's answer (303 and ``mpq_session`` on success); ``c`` keeps the cookies.
    """
    form = c.get("/ui/signin")
    assert form.status_code == 200, form.text
    token = csrf_of(form.text)
    return c.post("/ui/signin", data={"key": key, "csrf": token, "next": next_url})
