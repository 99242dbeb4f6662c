"""``mpq submit`` and ``mpq jobs`` as pipelines run them, against one real ``mpq up``.

One ``mpq up`` (API and worker processes, SQLite) serves the whole module. The commands
whose process matters (the full submit, with stderr a pipe as in a CI log; a waiter
cancelled from another command) run as ``python -m commands``; the others call
:func:`commands.main.main` in the test's process, sparing an interpreter start (torch's
import) per command: what they check is the exit status and the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from commands.main import main
from tests.conftest import ROOT, Digits
from tests.service.api.conftest import free_port, upload_digits
from tests.test_readme import MpqUp, user_env

COMMAND_S = 300
FAST = ["--trials", "4", "--sensitivity", "local", "--seed", "0"]
FLOOR = re.compile(r"smaller than ([\d,]+) bytes")
API_PID = re.compile(r"^started the API \(pid (\d+)\)", re.M)
PIPELINES = ROOT / "docs" / "pipelines.md"
DOCS_BLOCK = re.compile(r"^<!-- pipeline-test: (\w+) -->\n```bash\n(.*?)^```$", re.M | re.S)


@dataclass(frozen=True)
class Stack:
    url: str
    key: str
    env: dict[str, str]
    model_id: int
    dataset_id: int
    api_pid: int

    def http(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=COMMAND_S)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, digits: Digits) -> Iterator[Stack]:
    """One ``mpq up`` for the module, with the digits model and data uploaded."""
    root = tmp_path_factory.mktemp("client")
    env = user_env(root)
    up = MpqUp(root, env)
    try:
        key = up.wait_ready()
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=up.url, headers=auth, timeout=COMMAND_S) as c:
            model_id, dataset_id = upload_digits(c, digits)
        api = API_PID.search(up.out.read_text())
        assert api is not None, up.logs()
        env |= {"MPQ_URL": up.url, "MPQ_API_KEY": key}
        yield Stack(up.url, key, env, model_id, dataset_id, int(api[1]))
    finally:
        up.stop()


def mpq(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``mpq ARGS`` as a pipeline does (stdout and stderr pipes); never raises on status."""
    return subprocess.run(
        [sys.executable, "-m", "commands", *args],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_S,
        check=False,
    )


@dataclass(frozen=True)
class Ran:
    returncode: int | str | None
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Ran]:
    """``cli(*args)``: ``mpq ARGS`` in this process, with ``MPQ_URL`` and ``MPQ_API_KEY`` set."""
    monkeypatch.setenv("MPQ_URL", stack.url)
    monkeypatch.setenv("MPQ_API_KEY", stack.key)

    def run(*args: str) -> Ran:
        capsys.readouterr()
        try:
            status: int | str | None = main(list(args))
        except SystemExit as exc:  # argparse refusing a flag
            status = exc.code
        out = capsys.readouterr()
        return Ran(status, out.out, out.err)

    return run


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_submit_uploads_waits_and_downloads_checked_files(
    stack: Stack, digits: Digits, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    run = mpq(
        stack,
        *("submit", str(digits.pt2), "--data", str(digits.npz), "--name", "pipeline"),
        *("--max-drop", "0.05", "--space", "int4,int8", *FAST),
        *("--wait", "--download", str(out), "--json"),
    )
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)  # stdout is the one JSON document
    assert job["status"] == "succeeded" and job["result"]["met_targets"] is True
    assert "\r" not in run.stderr and "\x1b" not in run.stderr  # a CI log: plain lines
    assert f"job {job['id']}: succeeded" in run.stderr.splitlines()
    with stack.http() as c:
        listed = c.get(f"/v1/jobs/{job['id']}/artifacts").json()["data"]
        model = c.get(f"/v1/models/{job['model_id']}").json()
    assert model["name"] == "pipeline"
    assert {"model.mpq", "model.onnx", "result.json"} <= {a["name"] for a in listed}
    assert sorted(p.name for p in out.iterdir()) == sorted(a["name"] for a in listed)
    for artifact in listed:
        assert sha256(out / artifact["name"]) == artifact["sha256"]


def test_without_wait_prints_the_id_and_jobs_commands_follow_it(
    stack: Stack, cli: Callable[..., Ran], tmp_path: Path
) -> None:
    ids = ("id:" + str(stack.model_id), "--data", f"id:{stack.dataset_id}")
    run = cli("submit", *ids, "--max-drop", "0.05", "--space", "int8", *FAST)
    assert run.returncode == 0, run.stderr
    job_id = int(run.stdout)  # the id alone: JOB=$(mpq submit ...)
    waited = cli("jobs", "wait", str(job_id), "--json")
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "succeeded"
    listed = cli("jobs", "list", "--status", "succeeded", "--json")
    assert job_id in [j["id"] for j in json.loads(listed.stdout)["data"]]
    table = cli("jobs", "list")
    assert table.returncode == 0 and re.search(rf"^{job_id}\s+succeeded", table.stdout, re.M)
    shown = cli("jobs", "show", str(job_id))
    assert shown.stdout.startswith(f"job {job_id}: succeeded")
    assert "met_targets: true" in shown.stdout
    got = cli("jobs", "download", str(job_id), str(tmp_path / "files"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "files" / "model.mpq").is_file()
    again = cli("jobs", "cancel", str(job_id))  # a finished job: the API's 409
    assert again.returncode == 2 and "error[conflict]" in again.stderr


def test_a_size_target_at_the_floor_is_accepted_and_missed(
    stack: Stack, cli: Callable[..., Ran]
) -> None:
    ids = (f"id:{stack.model_id}", "--data", f"id:{stack.dataset_id}")
    refused = cli("submit", *ids, "--max-bytes", "1", *FAST)
    assert refused.returncode == 2  # the API's 422, in this command's words
    assert "error[invalid_plan]: --max-bytes is 1 bytes" in refused.stderr
    found = FLOOR.search(refused.stderr)
    assert found is not None, refused.stderr
    floor = found[1].replace(",", "")  # what the service accepts, and no plan reaches
    run = cli("submit", *ids, "--max-bytes", floor, *FAST, "--wait", "--json")
    assert run.returncode == 3, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "succeeded" and job["result"]["met_targets"] is False
    assert "missed its targets (exit status 3)" in run.stderr


def test_a_job_failing_in_the_worker_exits_4(
    stack: Stack, cli: Callable[..., Ran], digits: Digits, tmp_path: Path
) -> None:
    arrays = dict(np.load(digits.npz))
    arrays["labels"] = arrays["labels"] + 10  # valid labels, but the model has 10 classes
    bad = tmp_path / "shifted.npz"
    np.savez(bad, **arrays)
    run = cli("submit", f"id:{stack.model_id}", "--data", str(bad), *FAST, "--wait")
    assert run.returncode == 4, run.stderr
    assert "error[invalid_labels]" in run.stderr


def test_cancelled_while_waiting_exits_5_and_a_wait_timeout_exits_1(
    stack: Stack, cli: Callable[..., Ran], tmp_path: Path
) -> None:
    ids = (f"id:{stack.model_id}", "--data", f"id:{stack.dataset_id}")
    run = cli("submit", *ids, "--trials", "10000", "--sensitivity", "local")
    assert run.returncode == 0, run.stderr
    job_id = run.stdout.strip()
    timed_out = cli("jobs", "wait", job_id, "--wait-timeout", "0.5")
    assert timed_out.returncode == 1 and "error[wait_timeout]" in timed_out.stderr
    log = tmp_path / "wait.log"
    with log.open("w") as err:
        waiter = subprocess.Popen(
            [sys.executable, "-m", "commands", "jobs", "wait", job_id],
            env=stack.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while f"job {job_id}:" not in log.read_text():  # the waiter has polled once
            assert waiter.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        cancel = cli("jobs", "cancel", job_id)
        assert cancel.returncode == 0 and cancel.stdout == f"job {job_id}: cancelled\n"
        assert waiter.wait(timeout=60) == 5, log.read_text()
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert f"job {job_id} was cancelled" in log.read_text()


def test_bad_input_exits_2_and_an_unreachable_service_1(
    cli: Callable[..., Ran], digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = ("--data", str(digits.npz))
    missing = cli("submit", "nowhere.pt2", *data)
    assert missing.returncode == 2 and "error[file_missing]" in missing.stderr
    assert cli("submit", str(digits.pt2), *data, "--trials", "many").returncode == 2
    spec = cli("submit", str(digits.pt2), *data, "--max-drop", "-1")
    assert spec.returncode == 2 and "error[invalid_plan]" in spec.stderr
    wrong = cli("jobs", "list", "--api-key", "mpq_not-a-key")
    assert wrong.returncode == 2 and "error[unauthorized]" in wrong.stderr
    unknown = cli("jobs", "show", "999999")
    assert unknown.returncode == 2 and "error[not_found]" in unknown.stderr
    down = cli("jobs", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "error[service_unreachable]" in down.stderr
    monkeypatch.delenv("MPQ_API_KEY")
    keyless = cli("jobs", "list")
    assert keyless.returncode == 2 and "mpq admin create-key" in keyless.stderr


def test_a_wait_bears_the_api_being_restarted(stack: Stack, cli: Callable[..., Ran]) -> None:
    ids = (f"id:{stack.model_id}", "--data", f"id:{stack.dataset_id}")
    run = cli("submit", *ids, "--max-drop", "0.05", "--space", "int8", *FAST)
    assert run.returncode == 0, run.stderr
    os.killpg(stack.api_pid, signal.SIGKILL)  # `mpq up` starts another API a second later
    deadline = time.monotonic() + 30
    with stack.http() as c:
        while True:  # until the dead API's socket is closed
            try:
                c.get("/healthz")
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "the API still answers after SIGKILL"
            time.sleep(0.05)
    waited = cli("jobs", "wait", run.stdout.strip())
    assert waited.returncode == 0, waited.stderr
    assert "error[" not in waited.stderr and "trying again for up to" in waited.stderr


def test_the_docs_cron_script_runs_as_written(stack: Stack, digits: Digits, tmp_path: Path) -> None:
    """docs/pipelines.md's cron script, under bash with ``mpq`` on PATH (a shim)."""
    blocks = dict(DOCS_BLOCK.findall(PIPELINES.read_text()))
    assert set(blocks) == {"cron"}, "docs/pipelines.md: one ```bash block marked cron"
    out = tmp_path / "nightly" / "today"
    env = stack.env | {
        "MODEL": str(digits.pt2),
        "DATA": str(digits.npz),
        "OUT": str(out),
        "TRIALS": "4",
    }
    run = subprocess.run(
        ["bash", "-c", blocks["cron"]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_S,
        check=False,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert run.stdout == f"compressed: {out}/model.mpq\n"
    job = json.loads((tmp_path / "nightly" / "today.job.json").read_text())
    assert job["status"] == "succeeded" and (out / "model.mpq").is_file()
