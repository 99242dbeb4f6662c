"""`mpq up`'s children: restart delays doubling, reset once stable; a dead one's group killed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from commands.supervisor import FIRST_DELAY_S, MAX_DELAY_S, STABLE_S, Child, how


def test_the_delay_doubles_up_to_the_cap_and_starts_over_after_a_stable_run() -> None:
    child = Child("worker", "the worker", ("worker",))  # never started: no process to kill
    delays = [child.died(now=float(i)) for i in range(9)]  # each death 1 s after the last
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert (FIRST_DELAY_S, MAX_DELAY_S) == (1.0, 60.0)
    assert child.restarts == 9 and child.due == 8.0 + 60.0
    child._started = 100.0  # as start() records it
    assert child.died(now=100.0 + STABLE_S) == FIRST_DELAY_S  # ran STABLE_S: a fresh series
    child._started = 200.0
    assert child.died(now=200.0 + STABLE_S - 0.5) == 2.0  # ran under STABLE_S: doubles
    assert child.restarts == 11


def test_how_a_process_ended_reads_from_its_return_code() -> None:
    assert how(0) == "exited with status 0"
    assert how(3) == "exited with status 3"
    assert how(-9) == "was killed by SIGKILL"
    assert how(-200) == "was killed by signal 200"  # no such name in signal.Signals


def test_a_dead_childs_leftover_group_is_killed_before_its_restart(tmp_path: Path) -> None:
    child = Child("worker", "the worker", ("worker",))
    # A stand-in worker: a main process with a "pool" process in its group that outlives it.
    pool_pid = tmp_path / "pool.pid"
    child.process = subprocess.Popen(
        ["sh", "-c", f"sleep 60 & echo $! > {pool_pid}; exec sleep 60"], process_group=0
    )
    while not pool_pid.exists() or not pool_pid.read_text().strip():
        time.sleep(0.01)
    pool = int(pool_pid.read_text())
    os.kill(child.process.pid, signal.SIGKILL)
    child.process.wait()
    assert _alive(pool)  # the main process died alone
    assert child.died(now=time.monotonic()) == FIRST_DELAY_S
    deadline = time.monotonic() + 5
    while _alive(pool):
        assert time.monotonic() < deadline, "the leftover process is still alive"
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
