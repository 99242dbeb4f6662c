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

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.commands.test_up import KEY_LINE, mpq_up
from tests.conftest import ROOT, Digits
from tests.workers.receiver import Receiver, receiver
from tests.workers.test_beat import beat, beat_env

SECRET = "a-nightly-webhook-secret-0123456789"
RUN_S = 240  # a due time's job, from firing to succeeded, on a busy two-core machine
FAST = {
    "MPQ_BEAT_INTERVAL_S": "1",
    "MPQ_WEBHOOK_BACKOFF_S": "0.5",
    "MPQ_WEBHOOK_MAX_ATTEMPTS": "5",
    "MPQ_RECOVERY_INTERVAL_S": "1",
    "MPQ_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",  # the receiver listens on 127.0.0.1
}


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


@pytest.fixture
def night(tmp_path: Path) -> Iterator[tuple[Any, httpx.Client, Receiver, str]]:
    """`mpq up` (API, worker, beat), a second beat, a receiver failing each first attempt."""
    data = tmp_path / "data"
    with receiver(secret=SECRET, fail_first=1) as hooks, mpq_up(data, **FAST) as up:
        key = KEY_LINE.match(up.read_until("API key: "))
        assert key is not None, up.lines
        up.read_until("MPQ is serving at ")
        headers = {"Authorization": f"Bearer {key[1]}"}
        try:
            with (
                beat(beat_env(data, **FAST), tmp_path / "beat2.log"),
                httpx.Client(base_url=up.url, headers=headers, timeout=60) as client,
            ):
                yield up, client, hooks, key[1]
        finally:
            # SIGTERM, not mpq_up's SIGKILL: mpq up stops its API, worker and beat with it.
            up.process.send_signal(signal.SIGTERM)
            up.process.wait(timeout=60)


def _events(hooks: Receiver) -> list[tuple[str, int]]:
    """The events the receiver accepted (answered 200), by job."""
    return sorted((g.event, g.payload["job"]["id"]) for g in hooks.answered())


JOB = {
    "metric": "accuracy",
    "targets": {"max_drop": 0.02},
    "space": ["int2", "int3", "int4", "int8", "cb16"],
    "budget": {"trials": 8},
    "sensitivity": "local",
    "seed": 0,
}


def _upload(client: httpx.Client, path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        r = client.post("/v1/models", files={"file": ("digits.pt2", f)}, data={"name": "digits"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _runs(client: httpx.Client, schedule: int) -> list[dict[str, Any]]:
    """The schedule's runs that have submitted their job or failed to, oldest first.

    A beat claims a due time (the run row) before it submits the job: a run seen between
    the two has neither yet.
    """
    r = client.get(f"/v1/schedules/{schedule}/runs", params={"limit": 100})
    assert r.status_code == 200, r.text
    runs = [run for run in r.json()["data"] if run["job_id"] or run["error_code"]]
    return sorted(runs, key=lambda run: run["due_at"])


def _finished(client: httpx.Client, job_id: int) -> dict[str, Any] | None:
    job = client.get(f"/v1/jobs/{job_id}").json()
    return job if job["status"] in ("succeeded", "failed", "cancelled") else None


def _enable(client: httpx.Client, schedule: int, on: bool) -> None:
    r = client.patch(f"/v1/schedules/{schedule}", json={"enabled": on})
    assert r.status_code == 200, r.text


def expected_regression(now: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """What got worse by the documented rules (README, docs/nightly.md), with the defaults."""
    a, b = now["result"], before["result"]
    what = []
    if (a["chosen"]["file_bytes"] - b["chosen"]["file_bytes"]) / b["chosen"]["file_bytes"] > 0.02:
        what.append("bytes")
    if b["chosen"]["heldout"]["metric"] - a["chosen"]["heldout"]["metric"] > 0.005:
        what.append("metric")
    if b["met_targets"] and not a["met_targets"]:
        what.append("met_targets")
    return what


def _submit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "commands", "submit", *args, "--trials", "4", "--seed", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_S,
        check=False,
    )


def test_a_whole_night(
    night: tuple[Any, httpx.Client, Receiver, str],
    digits: Digits,
    retrained: Path,
    tmp_path: Path,
) -> None:
    up, client, hooks, key = night
    v1 = _upload(client, digits.pt2)
    with open(digits.npz, "rb") as f:
        r = client.post(
            "/v1/datasets",
            files={"file": ("digits.npz", f)},
            data={"name": "digits", "model_id": str(v1["id"])},
        )
    assert r.status_code == 201, r.text
    dataset = r.json()["id"]
    r = client.put("/v1/models/digits/aliases/candidate", json={"version": v1["version"]})
    assert r.status_code == 200, r.text
    events = ["job.succeeded", "job.failed", "job.regressed"]
    r = client.post("/v1/webhooks", json={"url": hooks.url, "events": events, "secret": SECRET})
    assert r.status_code == 201, r.text
    hook = r.json()["id"]
    body = {
        "name": "nightly",
        "cron": "* * * * *",
        "timezone": "Europe/Paris",
        "model": {"name": "digits", "alias": "candidate"},
        "dataset_id": dataset,
        "job": JOB,
    }
    r = client.post("/v1/schedules", json=body)
    assert r.status_code == 201, r.text
    schedule = r.json()["id"]

    # Night 1: the first due minute fires once, though two beats watch the schedule.
    first = _wait("the first run", 75, lambda: _runs(client, schedule))[0]
    _enable(client, schedule, False)  # hold the next runs while this one works
    assert first["job_id"] is not None, first
    job1 = _wait("job 1", RUN_S, lambda: _finished(client, first["job_id"]))
    assert job1["status"] == "succeeded", job1
    assert job1["schedule_id"] == schedule and job1["model_id"] == v1["id"]
    assert job1["warm_start_job_id"] is None and job1["regression"] is None

    # The team retrains: version 2, one epoch more, becomes the candidate.
    v2 = _upload(client, retrained)
    r = client.put("/v1/models/digits/aliases/candidate", json={"version": v2["version"]})
    assert r.status_code == 200, r.text
    _enable(client, schedule, True)

    # Night 2: warm from night 1, compared with it.
    second = _wait("the second run", 75, lambda: _runs(client, schedule)[1:])[0]
    _enable(client, schedule, False)
    assert second["job_id"] is not None, second
    job2 = _wait("job 2", RUN_S, lambda: _finished(client, second["job_id"]))
    assert job2["status"] == "succeeded", job2
    assert job2["model_id"] == v2["id"]
    assert job2["warm_start_job_id"] == job1["id"]
    warm = job2["result"]["warm_start"]
    assert warm["from_job"] == job1["id"] and warm["seeded_plans"] >= 1
    regression = job2["regression"]
    assert regression["compared_with"] == job1["id"]
    assert regression["what"] == expected_regression(job2, job1)
    assert regression["regressed"] == bool(regression["what"])

    # Exactly one job per due time: two runs, two jobs of the schedule.
    runs = client.get(f"/v1/schedules/{schedule}/runs").json()["data"][::-1]  # every row
    assert [run["job_id"] for run in runs] == [job1["id"], job2["id"]]
    jobs = client.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert sorted(j["id"] for j in jobs if j.get("schedule_id") == schedule) == [
        job1["id"],
        job2["id"],
    ]

    # Every event once, after a failed first attempt, and every signature good.
    want = [("job.succeeded", job1["id"]), ("job.succeeded", job2["id"])]
    want += [("job.regressed", job2["id"])] if regression["regressed"] else []
    _wait("the webhooks", 120, lambda: len(_events(hooks)) >= len(want))
    time.sleep(2)  # nothing more may arrive
    assert _events(hooks) == sorted(want)
    assert all(g.verified for g in hooks.got)  # by the snippet of docs/webhooks.md
    log = client.get(f"/v1/webhooks/{hook}/deliveries").json()["data"]
    assert sorted((d["event"], d["job_id"]) for d in log) == sorted(want)
    assert all(
        (d["status"], d["attempts"], d["response_code"]) == ("delivered", 2, 200) for d in log
    )

    # The pipeline client on the same service: met, missed, failed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    env |= {"MPQ_URL": up.url, "MPQ_API_KEY": key}
    ids = (f"id:{v2['id']}", "--data", f"id:{dataset}")
    met = _submit(env, *ids, "--max-drop", "0.05", "--wait", "--download", str(tmp_path / "out"))
    assert met.returncode == 0, met.stderr
    assert (tmp_path / "out" / "model.mpq").is_file()
    refused = _submit(env, *ids, "--max-bytes", "1")
    assert refused.returncode == 2, refused.stderr
    floor = re.search(r"smaller than ([\d,]+) bytes", refused.stderr)
    assert floor is not None, refused.stderr
    missed = _submit(env, *ids, "--max-bytes", floor[1].replace(",", ""), "--wait")
    assert missed.returncode == 3, missed.stderr
    arrays = dict(np.load(digits.npz))
    arrays["labels"] = arrays["labels"] + 10  # labels the 10-class model cannot have
    np.savez(tmp_path / "shifted.npz", **arrays)
    failed = _submit(env, f"id:{v2['id']}", "--data", str(tmp_path / "shifted.npz"), "--wait")
    assert failed.returncode == 4, failed.stderr
    # ... and the failure is one more event, delivered once.
    _wait("job.failed", 60, lambda: hooks.answered("job.failed"))
