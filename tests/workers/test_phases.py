"""A job's phases as a polling client sees them, over real processes (uvicorn + ``mpq worker``).

From the moment a worker takes a job it is never ``queued``: it is ``preparing`` with a
step and counts, then ``running`` with trials done and, once a trial finished, the time
left; a job cancelled while preparing stops at its next step and sends no trial runner.
The embedded stack (SQLite and its broker); heartbeats every 0.5 s.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.progress import STEPS
from tests.conftest import Digits
from tests.service.api.conftest import Server, start_stack
from tests.workers.conftest import FINAL, job_body, start_worker, upload_digits

FAST = {"MPQ_HEARTBEAT_S": "0.5", "MPQ_GRACE_S": "3", "MPQ_RECOVERY_INTERVAL_S": "1"}
POLL_S = 0.05


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_stack("embedded", tmp_path_factory.mktemp("phases"), **FAST)


@pytest.fixture(scope="module")
def ids(stack: Server, digits: Digits) -> tuple[int, int]:
    with stack.client(stack.key_a) as c:
        return upload_digits(c, digits)


def _follow(
    c: httpx.Client,
    job_id: int,
    timeout_s: float = 600,
    until: Callable[[dict[str, Any]], bool] = lambda job: False,
) -> list[dict[str, Any]]:
    """Every answer of ``GET /v1/jobs/{id}``, polled every ``POLL_S``, until a final state
    or one for which ``until`` holds."""
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        seen.append(job)
        if job["status"] in FINAL or until(job):
            return seen
        time.sleep(POLL_S)
    pytest.fail(f"job {job_id} did not end: {seen[-1]}")


def test_a_polling_client_sees_preparing_steps_then_trials_with_time_left(
    stack: Server, ids: tuple[int, int]
) -> None:
    with stack.client(stack.key_a) as c, start_worker(stack, "w1"):
        r = c.post("/v1/jobs", json=job_body(*ids, budget={"trials": 8}))
        assert r.status_code == 202, r.text
        seen = _follow(c, r.json()["id"])
    statuses = [j["status"] for j in seen]
    picked = next(i for i, s in enumerate(statuses) if s != "queued")
    assert "queued" not in statuses[picked:]  # once taken, never queued again
    assert statuses[-1] == "succeeded", seen[-1]
    # The status only moves forward.
    order = ["queued", "preparing", "running", "succeeded"]
    assert statuses == sorted(statuses, key=order.index)

    preparing = [j for j in seen if j["status"] == "preparing"]
    assert preparing, "never saw the job preparing"
    for j in preparing:
        p = j["progress"]
        assert j["phase"] == p["phase"] == "preparing" and p["step"] in STEPS, j
        assert p["eta_s"] is None and j["trials_done"] == 0 and j["baseline"] is None
        assert 0 <= p["done"] <= p["total"], p
    steps = [j["progress"]["step"] for j in preparing]
    assert steps == sorted(steps, key=STEPS.index)  # in order
    counted = [j["progress"] for j in preparing if j["progress"]["step"] == "sensitivity"]
    assert counted and all(1 <= p["done"] <= p["total"] > 1 for p in counted), steps

    running = [j for j in seen if j["status"] == "running"]
    assert running and all(j["baseline"] is not None for j in running)
    searching = [j for j in running if j["phase"] == "searching"]
    for j in searching:
        p = j["progress"]
        assert (p["done"], p["total"]) == (j["trials_done"], 8), j
        # The time left is known once a trial finished, never before.
        assert (p["eta_s"] is not None) == (p["done"] >= 1), p
    assert any(j["progress"]["eta_s"] is not None for j in searching), "no time left shown"
    assert all(j["progress"]["eta_s"] >= 0 for j in searching if j["progress"]["done"])
    # Phases move forward too: searching, then finalizing.
    phases = [j["phase"] for j in running]
    assert phases == sorted(phases, key=["searching", "finalizing"].index)

    done = seen[-1]
    assert done["phase"] is None and done["progress"]["phase"] == "finalizing"
    assert done["trials_done"] == 8 and done["started_at"] is not None


def _locked(db: Path) -> bool:
    """Whether some connection holds the database's write lock now."""
    conn = sqlite3.connect(db, timeout=0)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def test_a_job_cancelled_while_preparing_stops_at_its_next_step_and_runs_nothing(
    stack: Server, ids: tuple[int, int]
) -> None:
    # Formats no earlier job measured: the sensitivity steps are computed, not cached, and
    # enough of them (k-means ones are the slow kind) that a client polling every POLL_S
    # sees the step even on a loaded machine.
    space = ["int5", "int6", "int7", "cb4", "cb8", "cb32", "cb64", "cb128", "cb256"]
    body = job_body(*ids, space=space, budget={"trials": 8})
    with stack.client(stack.key_a) as c, start_worker(stack, "w2") as worker:
        job_id = c.post("/v1/jobs", json=body).json()["id"]
        seen = _follow(
            c,
            job_id,
            until=lambda j: j["status"] == "preparing" and j["progress"]["step"] == "sensitivity",
        )
        assert seen[-1]["status"] == "preparing", seen[-1]
        # Freeze the worker (so the step it is at cannot end meanwhile), but never while
        # it holds the database's write lock: the cancel below must not wait for it.
        for _ in range(100):
            os.killpg(worker.pid, signal.SIGSTOP)
            if not _locked(stack.data_dir / "mpq.db"):
                break
            os.killpg(worker.pid, signal.SIGCONT)
            time.sleep(0.05)
        try:
            at = c.get(f"/v1/jobs/{job_id}").json()
            assert at["status"] == "preparing", at
            r = c.post(f"/v1/jobs/{job_id}/cancel")
            assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        finally:
            os.killpg(worker.pid, signal.SIGCONT)
        log = stack.data_dir / "worker-w2.log"
        deadline = time.monotonic() + 30
        while "mpq.run_job" not in log.read_text() or "'cancelled'" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        job = c.get(f"/v1/jobs/{job_id}").json()
        trials = c.get(f"/v1/jobs/{job_id}/trials").json()
    text = log.read_text()
    assert re.search(r"Task mpq\.run_job\[[-\w]+\] succeeded in [\d.]+s: 'cancelled'", text), text
    # It stopped at a step of its preparation, before the study was made and the job started.
    stopped = re.search(rf"job {job_id} left preparing \(cancelled\); stopped at (\w+)", text)
    assert stopped is not None and stopped[1] in ("sensitivity", "seeding"), text
    assert "Task mpq.run_trials[" not in text  # no runner was sent (nor received)
    assert job["status"] == "cancelled" and job["phase"] is None, job
    assert job["baseline"] is None and job["trials_done"] == 0 and job["started_at"] is None
    assert job["progress"]["step"] == "sensitivity"  # where the user saw it
    assert trials == {"data": [], "count": 0, "front": []}
