"""``mpq up``: the whole service on one machine -- migrations, a first key, the API, a worker, beat.

``mpq up [--host H] [--port P] [--concurrency N]`` migrates the settings' database (the
code of ``mpq db upgrade``), creates the team ``default`` and prints its first API key if
the database has no team yet, then runs ``mpq api``, ``mpq worker`` and ``mpq beat``
(which fires the schedules, ``/v1/schedules``) as child processes and prints
``MPQ is serving at http://H:P`` once ``/healthz`` answers.

Its own stdout carries only those few lines (flushed at once, so a parent reading the
pipe sees them); the children's output goes to stderr. Once the API answers, a child
that dies (a worker SIGKILLed by the OOM killer, say) is restarted, with a delay that
doubles from 1 s to 60 s while it keeps dying (:mod:`commands.supervisor`); each restart
is logged on stderr and counted in ``/metrics`` (``mpq_process_restarts_total``), and a
job the dead worker held resumes by the workers' recovery sweep. A child that exits
before the API first answers is a failure to start: the others are stopped and ``mpq up``
exits with status 1. Only SIGINT and SIGTERM stop everything: they are forwarded to
every child, each getting up to ``STOP_TIMEOUT_S`` to finish before they are killed (a
second signal kills them at once).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from types import FrameType
from typing import Any

from commands.supervisor import POLL_S, Child, Supervisor, how
from service.private_files import UMASK
from service.settings import Settings, get_settings

__all__ = ["add_up_command"]

DEFAULT_TEAM = "default"
KEY_NAME = "mpq up"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


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
    api = Child("api", "the API", ("api", "--host", host, "--port", str(port)))
    worker = Child("worker", "the worker", ("worker", "--concurrency", str(args.concurrency)))
    beat = Child("beat", "beat", ("beat",))
    supervisor = Supervisor([api, worker, beat], settings.data_dir, say=_say, warn=_warn)
    try:
        supervisor.start()
        _say(
            f"started the API (pid {api.pid}) and a worker "
            f"(pid {worker.pid}, concurrency {args.concurrency})"
        )
        _say(f"started beat (pid {beat.pid}), which fires the schedules")
        return _supervise(supervisor, stop, host=host, port=port)
    finally:
        supervisor.stop(stop.signals, timeout_s=STOP_TIMEOUT_S)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Stop:
    """The SIGINT/SIGTERM deliveries this process has had, recorded by its handler."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)


def _supervise(supervisor: Supervisor, stop: _Stop, *, host: str, port: int) -> int:
    """Wait for ``/healthz``, then restart dead children until a signal comes (0).

    Before the first ``/healthz`` answer a child's exit is a failure to start (a bad
    setting, say): it is reported and ``mpq up`` exits 1 instead of retrying.
    """
    url = f"http://{_bracketed(host)}:{port}"
    probe = f"http://{_bracketed(_reachable(host))}:{port}/healthz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stop.signals:
        dead = supervisor.dead()
        if dead is not None:
            assert dead.process is not None  # dead() returns started children only
            _error(
                "process_exited",
                f"{dead.name} (pid {dead.pid}) {how(dead.process.returncode)} while starting; "
                "stopping the rest (its output above says why)",
            )
            return 1
        if _answers(probe):
            _say(f"MPQ is serving at {url}")
            _say(f"dashboard: {url}/ui (sign in with an API key)")
            _say(f"API docs: {url}/docs (Ctrl-C stops the API, the worker and beat)")
            break
        if time.monotonic() > deadline:
            _error("startup_timeout", f"{probe} did not answer in {READY_TIMEOUT_S:.0f} s")
            return 1
        time.sleep(POLL_S)
    while not stop.signals:
        supervisor.restart_dead()
        time.sleep(POLL_S)
    return 0


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


def _warn(line: str) -> None:
    print(f"mpq up: {line}", file=sys.stderr, flush=True)


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
