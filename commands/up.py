"""``mpq up``: the whole service on one machine -- migrations, a first key, the API, a worker.

``mpq up [--host H] [--port P] [--concurrency N]`` migrates the settings' database (the
code of ``mpq db upgrade``), creates the team ``default`` and prints its first API key if
the database has no team yet, then runs ``mpq api`` and ``mpq worker`` as child
processes and prints ``MPQ is serving at http://H:P`` once ``/healthz`` answers.

Its own stdout carries only those few lines (flushed at once, so a parent reading the
pipe sees them); the children's output goes to stderr. SIGINT and SIGTERM are forwarded
to both children, which get up to ``STOP_TIMEOUT_S`` to finish before they are killed (a
second signal kills them at once). If either child exits on its own, the other is
stopped and ``mpq up`` exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import FrameType
from typing import Any

from service.private_files import UMASK
from service.settings import Settings, get_settings

__all__ = ["add_up_command"]

DEFAULT_TEAM = "default"
KEY_NAME = "mpq up"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.1
# The children write to this process's stderr, keeping stdout for the lines above.
STDERR_FD = 2


def add_up_command(subparsers: Any) -> None:
    """Register ``mpq up [--host H] [--port P] [--concurrency N]``."""
    up = subparsers.add_parser("up", help="migrate, then serve the API and a worker (one machine)")
    up.add_argument(
        "--host", metavar="H", help="interface the API binds (default: MPQ_API_HOST or 127.0.0.1)"
    )
    up.add_argument(
        "--port", type=_port, metavar="P", help="the API's TCP port (default: MPQ_API_PORT or 8000)"
    )
    up.add_argument(
        "--concurrency",
        type=_positive,
        default=2,
        metavar="N",
        help="jobs the worker runs at once (default 2)",
    )
    up.set_defaults(func=_up)


def _up(args: argparse.Namespace) -> int:
    os.umask(UMASK)  # the data directory is for this user only (the children inherit it)
    settings = get_settings()
    host: str = args.host or settings.api_host
    port: int = settings.api_port if args.port is None else args.port
    if not _can_listen(host, port):
        return 2
    _migrate(settings)
    _first_key(settings)
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        children["the API"] = _spawn("api", "--host", host, "--port", str(port))
        children["the worker"] = _spawn("worker", "--concurrency", str(args.concurrency))
        _say(
            f"started the API (pid {children['the API'].pid}) and a worker "
            f"(pid {children['the worker'].pid}, concurrency {args.concurrency})"
        )
        return _supervise(children, stop, host=host, port=port)
    finally:
        _stop(children, stop)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Stop:
    """The SIGINT/SIGTERM deliveries this process has had, recorded by its handler."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)


def _supervise(
    children: dict[str, subprocess.Popen[bytes]], stop: _Stop, *, host: str, port: int
) -> int:
    """Wait for ``/healthz``, then for a signal (0) or a child's exit (1)."""
    url = f"http://{_bracketed(host)}:{port}"
    probe = f"http://{_bracketed(_reachable(host))}:{port}/healthz"
    deadline: float | None = time.monotonic() + READY_TIMEOUT_S
    while not stop.signals:
        for name, child in children.items():
            if child.poll() is not None:
                _error(
                    "process_exited",
                    f"{name} (pid {child.pid}) {_how(child.returncode)}; stopping the rest "
                    "(its output above says why)",
                )
                return 1
        if deadline is not None:
            if _answers(probe):
                deadline = None
                _say(f"MPQ is serving at {url}")
                _say(f"API docs: {url}/docs (Ctrl-C stops the API and the worker)")
            elif time.monotonic() > deadline:
                _error("startup_timeout", f"{probe} did not answer in {READY_TIMEOUT_S:.0f} s")
                return 1
        time.sleep(POLL_S)
    return 0


def _stop(children: dict[str, subprocess.Popen[bytes]], stop: _Stop) -> None:
    """Stop the children: forward the signal received (else SIGTERM), then kill stragglers."""
    running = [c for c in children.values() if c.poll() is None]
    if running:
        names = " and ".join(n for n, c in children.items() if c in running)
        _say(f"stopping {names} (a second Ctrl-C kills at once)")
    sig = stop.signals[0] if stop.signals else signal.SIGTERM
    for child in running:
        child.send_signal(sig)
    handled = len(stop.signals)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(c.poll() is None for c in running):
        if len(stop.signals) > handled or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    for name, child in children.items():
        if child.poll() is None:
            _say(f"killing {name} (pid {child.pid})")
        # Each child leads its own process group; this also ends leftovers such as the
        # worker's pool processes when the worker itself died.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    # A process group of its own, so a Ctrl-C at the terminal reaches the child once,
    # forwarded by us, rather than twice (Celery takes a second SIGINT as a cold shutdown).
    return subprocess.Popen(
        [sys.executable, "-m", "commands", *args],
        stdin=subprocess.DEVNULL,
        stdout=STDERR_FD,
        process_group=0,
    )


def _migrate(settings: Settings) -> None:
    from sqlalchemy.engine import make_url

    from service.db.migrate import upgrade

    upgrade(settings.database_url, "head")
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    _say(f"migrated {shown} up to head")


def _first_key(settings: Settings) -> None:
    """Create team ``default`` and a key and print the key, unless a team exists already."""
    from sqlalchemy import select

    from service.db import Team, create_api_key, create_team, make_engine, session_factory
    from service.errors import ConflictError

    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            if session.scalar(select(Team.id).limit(1)) is None:
                try:
                    team = create_team(session, name=DEFAULT_TEAM)
                except ConflictError:  # another `mpq up` created it since the check
                    pass
                else:
                    _, secret = create_api_key(session, team=team, name=KEY_NAME)
                    _say(f"created team {DEFAULT_TEAM!r} and its first API key (shown only now)")
                    _say(f"API key: {secret}")
                    return
            # "default" if it exists, else the oldest team.
            first = session.scalar(
                select(Team.name).order_by(Team.name != DEFAULT_TEAM, Team.id).limit(1)
            )
    finally:
        engine.dispose()
    _say(
        f"teams exist already, so no key was made (a key is shown only once); make one with "
        f"`mpq admin create-key --team {first}`"
    )


def _can_listen(host: str, port: int) -> bool:
    """Whether the API could bind ``host:port``; prints the error when it could not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            sock.bind(address)
    except OSError as exc:
        _error(
            "address_unavailable",
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose another --port or --host, or stop the process using it",
        )
        return False
    return True


def _how(returncode: int) -> str:
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:  # a signal without a name, such as a real-time one
        return f"was killed by signal {-returncode}"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _reachable(host: str) -> str:
    """An address that reaches a server bound to ``host`` from this machine."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _say(line: str) -> None:
    print(line, flush=True)


def _error(code: str, message: str) -> None:
    print(f"error[{code}]: {message}", file=sys.stderr, flush=True)


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1 to 65535)")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value
