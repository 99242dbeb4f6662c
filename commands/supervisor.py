"""The child processes of ``mpq up``: started, restarted with backoff when they die, stopped.

A :class:`Child` is one ``mpq`` subcommand (``api``, ``worker``) run as a process that
leads a process group of its own. When it dies, :meth:`Child.died` kills what is left of
its group (a SIGKILLed worker leaves its pool processes behind) and schedules a restart
after a delay that doubles with each quick death: :data:`FIRST_DELAY_S`, twice that, ...
up to :data:`MAX_DELAY_S`; a child that ran :data:`STABLE_S` before dying starts over at
:data:`FIRST_DELAY_S`. :class:`Supervisor` owns the children and writes their restart
counts for ``/metrics`` (:mod:`service.supervision`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from service.supervision import write_restarts

__all__ = ["FIRST_DELAY_S", "MAX_DELAY_S", "STABLE_S", "Child", "Supervisor", "how"]

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 60.0
STABLE_S = 60.0
POLL_S = 0.1
# The children write to this process's stderr, keeping stdout for `mpq up`'s own lines.
STDERR_FD = 2


class Child:
    """One supervised ``python -m commands ARGS...`` process.

    Args:
        label: its name in ``/metrics`` (``api``, ``worker``).
        name: its name in messages (``the API``).
        args: the ``mpq`` subcommand and its arguments.
    """

    def __init__(self, label: str, name: str, args: tuple[str, ...]) -> None:
        self.label, self.name, self.args = label, name, args
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.due: float | None = None  # when to start it again, while it is down
        self._started = 0.0
        self._quick = 0  # deaths in a row, each within STABLE_S of its start

    @property
    def pid(self) -> int:
        assert self.process is not None  # only asked of a started child
        return self.process.pid

    def start(self) -> None:
        """Start the process (again), in a process group of its own."""
        # A group of its own, so a Ctrl-C at the terminal reaches the child once,
        # forwarded by `mpq up`, rather than twice (Celery takes a second SIGINT as a
        # cold shutdown), and so that its leftovers can be killed together.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "commands", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=STDERR_FD,
            process_group=0,
        )
        self._started = time.monotonic()
        self.due = None

    def exited(self) -> bool:
        """Whether the process has exited (it is reaped then; its group may live on)."""
        return self.process is not None and self.process.poll() is not None

    def died(self, now: float) -> float:
        """Record its death: kill its group, count a restart, return the delay before it."""
        self.kill_group()
        self._quick = self._quick + 1 if now - self._started < STABLE_S else 1
        delay = min(MAX_DELAY_S, FIRST_DELAY_S * 2.0 ** (self._quick - 1))
        self.restarts += 1
        self.due = now + delay
        return delay

    def kill_group(self) -> None:
        """SIGKILL every process left in its group (the pool of a dead worker)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


class Supervisor:
    """The children of one ``mpq up`` and the file their restart counts go to.

    Args:
        children: the processes to run, not started yet.
        data_dir: where the restart counts are written (:mod:`service.supervision`).
        say: prints a line of ``mpq up``'s own on stdout (stopping, killing).
        warn: prints a line on stderr, beside the children's logs (a death, a restart).
    """

    def __init__(
        self,
        children: list[Child],
        data_dir: Path,
        *,
        say: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self.children, self.data_dir = children, data_dir
        self.say, self.warn = say, warn

    def start(self) -> None:
        """Start every child; record zero restarts."""
        self._record()
        for child in self.children:
            child.start()

    def dead(self) -> Child | None:
        """A started child that has exited and is not yet scheduled again, if any."""
        return next((c for c in self.children if c.exited() and c.due is None), None)

    def restart_dead(self) -> None:
        """Schedule every newly dead child's restart; start each whose delay is over."""
        now = time.monotonic()
        while (child := self.dead()) is not None:
            assert child.process is not None  # dead() returns started children only
            pid, returncode = child.pid, child.process.returncode
            delay = child.died(now)
            self._record()
            self.warn(
                f"{child.name} (pid {pid}) {how(returncode)}; restarting it in {delay:g} s "
                f"(restart {child.restarts})"
            )
        for child in self.children:
            if child.due is not None and now >= child.due:
                child.start()
                self.warn(f"restarted {child.name} (pid {child.pid})")

    def stop(self, signals: list[int], *, timeout_s: float) -> None:
        """Forward ``signals[0]`` (else SIGTERM) to the live children, then kill stragglers.

        A further signal appended to ``signals`` meanwhile (a second Ctrl-C), or
        ``timeout_s``, ends the wait; every child's process group is then SIGKILLed.
        """
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        if running:
            names = " and ".join(c.name for c in running)
            self.say(f"stopping {names} (a second Ctrl-C kills at once)")
        sig = signals[0] if signals else signal.SIGTERM
        for child in running:
            assert child.process is not None
            child.process.send_signal(sig)
        handled = len(signals)
        deadline = time.monotonic() + timeout_s
        while any(c.process is not None and c.process.poll() is None for c in running):
            if len(signals) > handled or time.monotonic() > deadline:
                break
            time.sleep(POLL_S)
        for child in self.children:
            if child.process is None:
                continue
            if child.process.poll() is None:
                self.say(f"killing {child.name} (pid {child.pid})")
            child.kill_group()
            child.process.wait()

    def _record(self) -> None:
        write_restarts(self.data_dir, {c.label: c.restarts for c in self.children})


def how(returncode: int) -> str:
    """How a process ended, from its return code: ``exited with status 1``, ``was killed by …``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:  # a signal without a name, such as a real-time one
        return f"was killed by signal {-returncode}"
