"""schemathesis against a real ``mpq up``: the API keeps the promises of its OpenAPI document.

One ``mpq up`` (migrations, first key, the API and a worker, as users start it) per
stack -- embedded (SQLite) and production's PostgreSQL + Redis, whose limits differ (a
32-bit id column) -- over a fresh data directory. The digits model and data are uploaded
(ids 1) and a two-trial job on them runs to the end (job 1, with its artifacts); then
``schemathesis run`` reads ``/openapi.json`` and tests every operation with the key: all
four phases (examples, coverage, fuzzing, stateful) and ``--checks all``. The run must
end with no failure at all -- no 5xx, no status, header, content type or body that the
document does not declare, no schema-valid request refused, no invalid one accepted, and
a 405 with ``Allow`` for every method a path does not have.

What is fuzzed, and how:

- Every operation, uploads and job submission included. Some operations take content
  whose acceptability OpenAPI cannot state, so for them alone ``positive_data_acceptance``
  also counts 413 and 422 as a right answer to a schema-valid request (``CONFIG``):
  an upload's file is arbitrary bytes to the schema, which the importer rightly refuses
  (422 with a format code, in well under a second: the sandboxed ``.pt2`` loader runs
  only on a real zip archive) -- whether bytes are a model, or arrays that fit one, is
  no schema's to say; and a job spec has rules across fields (at most one metric target
  and one size target, ``max_metric`` only for lower-is-better metrics, ``sqnr`` without
  a drop target) and a grammar for formats and pins that ``search.JobSpec`` checks
  (422 ``invalid_plan``), by design the one place they are checked; aliases and
  schedules likewise (``CONTENT_CHECKED`` says why). So are a webhook's URL, events and
  secret on creating or changing one (422 ``invalid_webhook_url``...: a URL's host,
  port, credentials and fragment are :mod:`service.domain.webhooks`'s rules, not the
  schema's). Every other check,
  and every check on every other operation, is as schemathesis ships it: invalid data
  must still be refused, and no request may get a 5xx.
- Job submission: a generated spec that is valid and names model and dataset 1 is a
  real job that the worker runs. That is rare and small (digits), and ``mpq up`` is
  stopped, its worker with it, when the run ends. Job 1 is finished before the run
  starts, so what the job routes answer for it does not depend on timing.
- Deterministic: a fixed ``--seed``, one schemathesis worker, no example database, so a
  run against the same code sends the same requests.

Size of the run: at most ``MAX_EXAMPLES`` test cases per operation in each phase, about
1,400 requests per stack; per stack the whole (start, uploads, job 1, fuzzing, stop)
takes about 1.5 minutes on a busy two-core machine, the fuzzing 25-35 s of it.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.commands.test_up import STOP_S, mpq_up
from tests.conftest import Digits
from tests.service.api.conftest import STACKS, upload_digits
from tests.service.conftest import require_redis, throwaway_postgres

MAX_EXAMPLES = 50
SEED = 20261204
RUN_TIMEOUT_S = 600
JOB_TIMEOUT_S = 180
FINISHED = {"succeeded", "failed", "cancelled"}
PHASES = "examples,coverage,fuzzing,stateful"
CONTENT_CHECKED = (
    "upload_model_v1_models_post",
    "upload_dataset_v1_datasets_post",
    "submit_job_v1_jobs_post",
    # an alias has a grammar (not all digits, not `latest`: `invalid_alias`), and a
    # schedule a cron grammar, an IANA zone and a job spec checked against its model
    "put_alias_v1_models__name__aliases__alias__put",
    "remove_alias_v1_models__name__aliases__alias__delete",
    "post_schedule_v1_schedules_post",
    "patch_schedule_v1_schedules__schedule_id__patch",
    "create_webhook_v1_webhooks_post",
    "update_webhook_v1_webhooks__webhook_id__patch",
)
CONFIG = f"""\
[[operations]]
include-operation-id = {list(CONTENT_CHECKED)!r}
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "401", "403", "404", "409", "413", "422", "429",
]
"""
"""schemathesis.toml for the run: see the module docstring for why those operations differ."""

_FAILURE = re.compile(r"^_{3,} (.+?) _{3,}$|^- (ST\d+ .+)$")


def _report(output: str) -> str:
    """The failing operations with their failure classes, then schemathesis's summary."""
    lines = []
    for line in output.splitlines():
        found = _FAILURE.match(line)
        if found:
            lines.append(found[1] or f"    {found[2]}")
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-4000:]
    return "\n".join([*lines, "", summary])


def _seed(client: httpx.Client, digits: Digits) -> None:
    """Model and dataset 1 (digits), and job 1: a two-trial search, finished, with artifacts.

    The fuzzing then reaches real rows where it tries id 1, and the stateful phase follows
    the job's artifact names to real downloads.
    """
    assert upload_digits(client, digits) == (1, 1)
    spec = {"model_id": 1, "dataset_id": 1, "budget": {"trials": 2}}
    submitted = client.post("/v1/jobs", json=spec)
    assert submitted.status_code == 202, submitted.text
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (job := client.get("/v1/jobs/1").json())["status"] not in FINISHED:
        assert time.monotonic() < deadline, f"job 1 not finished in {JOB_TIMEOUT_S} s: {job}"
        time.sleep(0.5)
    assert job["status"] == "succeeded", job


def _schemathesis(url: str, key: str, config: Path) -> subprocess.CompletedProcess[str]:
    """``schemathesis run`` over ``url``'s OpenAPI document, as the module docstring says."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            "all",
            "--phases",
            PHASES,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
            "--output-truncate",
            "false",
        ],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


@dataclass(frozen=True)
class Seeded:
    """A running ``mpq up`` with model, dataset and job 1, and its first key."""

    url: str
    key: str
    log: Path

    def client(self) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.url, headers=auth, timeout=120)


@contextmanager
def _stack(name: str) -> Iterator[dict[str, str]]:
    """The ``MPQ_*`` settings of stack ``name`` (:data:`STACKS`): none for the embedded one
    (SQLite and its broker under the data directory); a throwaway PostgreSQL database and
    a queue of its own on the test Redis, both removed afterwards, for the other."""
    # The fuzzer sends ~1,400 requests with one key: answers of the rate limit (declared,
    # so they would pass) would stand in for the checks of the requests they refuse.
    unlimited = {"MPQ_RATE_LIMIT_PER_S": "0"}
    if name == "embedded":
        yield unlimited
        return
    queue = f"mpq-fuzz-{uuid.uuid4().hex[:8]}"
    redis_url = require_redis()
    with throwaway_postgres() as url:
        yield unlimited | {
            "MPQ_DATABASE_URL": url,
            "MPQ_BROKER_URL": redis_url,
            "MPQ_QUEUE": queue,
        }
    import redis

    client = redis.Redis.from_url(redis_url)
    client.delete(queue)
    client.close()


@pytest.fixture(scope="module", params=STACKS)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, digits: Digits
) -> Iterator[Seeded]:
    """``mpq up`` on a stack over a fresh data directory, seeded by :func:`_seed`; stopped
    after. Both stacks, since PostgreSQL refuses values SQLite stores (32-bit ids)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the mpq up helpers read /proc")
    with (
        _stack(request.param) as env,
        mpq_up(tmp_path_factory.mktemp("fuzz") / "data", **env) as up,
    ):
        try:
            key = up.read_until("API key: ").removeprefix("API key: ")
            up.read_until("MPQ is serving at ")
            server = Seeded(up.url, key, up.log_path)
            with server.client() as client:
                _seed(client, digits)
            yield server
        finally:
            # SIGTERM, so that `mpq up` stops its API and worker too (a kill would orphan them)
            up.process.send_signal(signal.SIGTERM)
            up.process.wait(timeout=STOP_S)


def test_schemathesis_finds_nothing_against_mpq_up(seeded: Seeded, tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with seeded.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    run = _schemathesis(seeded.url, seeded.key, config)
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.out").write_text(output)
    where = f"schemathesis's output: {tmp_path / 'schemathesis.out'}; the server's: {seeded.log}"
    assert run.returncode == 0, f"{_report(output)}\n{where}"
    # every operation was selected and tested
    operations = sum(len(methods) for methods in paths.values())
    tested = f"Selected: {operations}/{operations}\n  Tested: {operations}\n"
    assert tested in run.stdout, _report(output)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/jobs", "GET, POST"),  # two routes share the path
        ("DELETE", "/v1/models", "GET, POST"),
        ("PUT", "/v1/jobs/1", "GET"),
        ("GET", "/v1/jobs/1/cancel", "POST"),
        ("TRACE", "/healthz", "GET"),
    ],
)
def test_a_405_names_every_method_of_the_path(
    seeded: Seeded, method: str, path: str, allow: str
) -> None:
    with seeded.client() as client:
        r = client.request(method, path)
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")
    assert r.headers["Allow"] == allow
    assert r.json()["error"]["message"] == f"{method} is not allowed on {path}; it answers {allow}"


def test_every_error_a_route_declares_has_the_error_body(seeded: Seeded) -> None:
    with seeded.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    ref = "#/components/schemas/ErrorResponse"
    for path, methods in paths.items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            errors = {int(s): r for s, r in operation["responses"].items() if int(s) >= 400}
            for status, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": ref}, (where, status)
            if path.startswith("/v1/"):  # every /v1 route needs a key and reads parameters
                assert {401, 422} <= set(errors), where
            assert 500 not in errors, where
