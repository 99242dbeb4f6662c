"""The job service end to end over real processes: job wall time, queue round trip, API latency.

Run: ``.venv/bin/python bench/service.py [--quick] [--only embedded|postgres] [--trials N]
[--requests N] [--work DIR]``

Two stacks, each started from scratch by ``bench/_stack.py`` with the production
commands (``mpq db upgrade``, ``mpq admin``, ``uvicorn service.main:app``, ``mpq worker``):

* ``embedded``: the default -- SQLite database and kombu's SQLite broker in a fresh
  ``MPQ_DATA_DIR``;
* ``postgres``: a throwaway database on ``--postgres-url`` (created, then dropped WITH
  FORCE) and Redis at ``--redis-url`` with a queue name of its own (its keys deleted
  after). Blobs and caches stay in a fresh data directory.

The model is the digits CNN (``examples/out/digits.pt2`` + ``digits.npz``, built with
``examples/digits.py`` when missing), uploaded once per stack. Jobs: metric accuracy,
targets ``max_drop=0.01``, space ``int2,int3,int4,int8,cb16``, seed 0.

1. Job wall time, per stack and mode: ``serial`` is a ``parallelism=1`` job on a
   one-process worker (``--concurrency 1``: Celery's solo pool); ``parallel`` a
   ``parallelism=2`` job on a ``--concurrency 2`` (prefork) worker. Each mode gets a
   freshly started worker (waited on until its log says ``ready``, so its start-up is
   not timed) and an emptied sensitivity cache (``<data dir>/cache``), so both modes
   pay the same one-time costs: opening the evaluator in each pool process and
   measuring sensitivity. The clock starts before ``POST /v1/jobs`` is sent;
   ``GET /v1/jobs/{id}`` is then polled every 0.1 s, and each column is the first
   poll that saw it: ``prepare`` (status past ``queued`` and ``preparing``: pickup, evaluator,
   sensitivity, ILP seeds, study -- ``mpq.run_job``), ``1st trial`` (``trials_done``
   >= 1), ``trials`` (``trials_done`` = budget), ``wall`` (``succeeded``).
   ``tail`` = wall - trials: claiming and sending ``mpq.finalize``, the finalize
   task, the poll. ``trials/s`` = budget / wall; ``phase/s`` = budget / (trials -
   prepare), the rate of the trial runners alone. ``final s`` is
   ``result.timings.finalize_s`` (the worker's own measure of ``search.finalize``),
   ``share`` its fraction of the wall time. Ratios: parallel / serial per stack,
   embedded / postgres per mode.
2. Queue round trip: after the serial job, on that (now warm) worker, tiny jobs
   (1 trial, ``parallelism=1``) one after another, each followed to success before
   the next is sent. ``POST->running``: from sending the POST to the first poll that
   sees the status past ``queued`` and ``preparing`` (polled every 0.01 s here). It
   includes ``mpq.run_job``'s work on a warm process (evaluator kept, sensitivity
   cached on disk; ILP seeds and study creation remain). ``run_job``: that task's own
   seconds, from the worker log's ``Task mpq.run_job[...] succeeded in X s`` (the
   log has no timestamps to time the hop directly). ``hop`` = POST->running -
   run_job: the API's POST, the broker and the worker's dispatch, good to about one
   0.01 s poll (the job turns ``running`` just before ``run_job`` sends its runners
   and returns). Medians of 5 (3 with ``--quick``), min and max of POST->running.
3. API latency: with every worker stopped, ``GET /v1/jobs/{id}`` and
   ``GET /v1/jobs/{id}/trials`` on the finished parallel job (its full budget of
   trials), each 100 times (20 with ``--quick``) in turn on one keep-alive client,
   after 5 unmeasured warm-up requests each. Median and p95 (nearest rank) in ms;
   ratio embedded / postgres.

Everything runs on this machine: the API, the workers, PostgreSQL and Redis share its
CPUs with this script (workers run torch with one thread per process).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import torch

# The repository root goes first: this file's own directory, which Python puts on the
# path, is itself named like the ``service`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (
    ROOT,
    Stack,
    StackError,
    Worker,
    postgres_database,
    redis_queue,
    start_api,
    start_worker,
    upload,
)

SPACE = ["int2", "int3", "int4", "int8", "cb16"]
FINAL = {"succeeded", "failed", "cancelled"}
WAITING = {"queued", "preparing"}
"""States before the trials begin: the clock of ``prepare`` runs through them."""
POLL_S = 0.1
RT_POLL_S = 0.01
WARMUP = 5
JOB_TIMEOUT_S = 900.0
MODES = (("serial", 1, 1), ("parallel", 2, 2))
"""(mode, job parallelism, worker concurrency)."""
_RUN_JOB = re.compile(r"Task mpq\.run_job\[[-\w]+\] succeeded in ([\d.e-]+)s")


def say(msg: str = "") -> None:
    print(msg, flush=True)


@dataclass
class JobRun:
    """One timed job: seconds from sending the POST to each first observation."""

    mode: str
    parallelism: int
    concurrency: int
    trials: int
    job_id: int = 0
    prepare: float | None = None
    first: float | None = None
    all_done: float | None = None
    wall: float = 0.0
    finalize_s: float | None = None

    @property
    def rate(self) -> float:
        return self.trials / self.wall

    @property
    def phase_rate(self) -> float | None:
        if self.prepare is None or self.all_done is None or self.all_done <= self.prepare:
            return None
        return self.trials / (self.all_done - self.prepare)


@dataclass
class StackResult:
    """Everything measured on one stack (``skipped`` says why nothing was)."""

    name: str
    jobs: dict[str, JobRun] = field(default_factory=dict)
    to_running: list[float] = field(default_factory=list)
    run_job: list[float] = field(default_factory=list)
    latency: dict[str, list[float]] = field(default_factory=dict)
    skipped: str | None = None


def job_body(model_id: int, dataset_id: int, *, trials: int, parallelism: int) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "dataset_id": dataset_id,
        "metric": "accuracy",
        "targets": {"max_drop": 0.01},
        "space": SPACE,
        "budget": {"trials": trials},
        "seed": 0,
        "parallelism": parallelism,
    }


def follow(
    c: httpx.Client,
    job_id: int,
    t0: float,
    worker: Worker,
    *,
    poll_s: float,
    seen: Callable[[dict[str, Any], float], bool] = lambda job, t: False,
) -> dict[str, Any]:
    """Poll the job every ``poll_s`` until it is final (or ``seen`` says stop); the last read.

    ``seen(job, seconds since t0)`` is called on every read. A job that ends other than
    succeeded, or outlives ``JOB_TIMEOUT_S``, raises with the worker's log.
    """
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        t = time.perf_counter() - t0
        if r.status_code != 200:
            raise StackError(f"GET /v1/jobs/{job_id} answered {r.status_code}: {r.text}")
        job: dict[str, Any] = r.json()
        if seen(job, t) or job["status"] in FINAL:
            if job["status"] in FINAL - {"succeeded"}:
                raise StackError(f"job {job_id} {job['status']}: {job}\n{worker.log()}")
            return job
        if t > JOB_TIMEOUT_S:
            raise StackError(f"job {job_id} still {job['status']} after {t:.0f}s\n{worker.log()}")
        time.sleep(poll_s)


def post_job(c: httpx.Client, body: dict[str, Any]) -> int:
    r = c.post("/v1/jobs", json=body)
    if r.status_code != 202:
        raise StackError(f"POST /v1/jobs answered {r.status_code}: {r.text}")
    return int(r.json()["id"])


def timed_job(c: httpx.Client, worker: Worker, ids: tuple[int, int], run: JobRun) -> JobRun:
    """Submit ``run``'s job, follow it every ``POLL_S``, fill in its times."""

    def seen(job: dict[str, Any], t: float) -> bool:
        if run.prepare is None and job["status"] not in WAITING:
            run.prepare = t
        if run.first is None and job["trials_done"] >= 1:
            run.first = t
        if run.all_done is None and job["trials_done"] >= run.trials:
            run.all_done = t
        return False

    body = job_body(*ids, trials=run.trials, parallelism=run.parallelism)
    t0 = time.perf_counter()
    run.job_id = post_job(c, body)
    job = follow(c, run.job_id, t0, worker, poll_s=POLL_S, seen=seen)
    run.wall = time.perf_counter() - t0
    if job["trials_done"] != run.trials:
        raise StackError(f"job {run.job_id} ran {job['trials_done']} of {run.trials} trials")
    timings = (job.get("result") or {}).get("timings") or {}
    run.finalize_s = timings.get("finalize_s")
    return run


def run_job_seconds(worker: Worker) -> list[float]:
    """Seconds of each ``mpq.run_job`` the worker ran, from its log, in order."""
    return [float(s) for s in _RUN_JOB.findall(worker.log())]


def round_trips(
    c: httpx.Client, worker: Worker, ids: tuple[int, int], n: int, result: StackResult
) -> None:
    """``n`` tiny jobs, one at a time: POST -> status running, and run_job's seconds."""
    body = job_body(*ids, trials=1, parallelism=1)
    for _ in range(n):
        before = len(run_job_seconds(worker))
        left: list[float] = []

        def seen(job: dict[str, Any], t: float, left: list[float] = left) -> bool:
            if job["status"] not in WAITING and not left:
                left.append(t)
            return False

        t0 = time.perf_counter()
        job_id = post_job(c, body)
        follow(c, job_id, t0, worker, poll_s=RT_POLL_S, seen=seen)
        result.to_running.append(left[0])
        seconds = run_job_seconds(worker)
        if len(seconds) <= before:
            raise StackError(f"no run_job line for job {job_id} in the worker's log")
        result.run_job.append(seconds[before])


def latency(c: httpx.Client, path: str, n: int) -> list[float]:
    """Seconds of ``n`` GETs of ``path`` after ``WARMUP`` unmeasured ones."""
    out: list[float] = []
    for i in range(WARMUP + n):
        t0 = time.perf_counter()
        r = c.get(path)
        dt = time.perf_counter() - t0
        if r.status_code != 200:
            raise StackError(f"GET {path} answered {r.status_code}: {r.text}")
        if i >= WARMUP:
            out.append(dt)
    return out


def measure(stack: Stack, args: argparse.Namespace, result: StackResult) -> None:
    """The three measurements on one running API (workers are started here)."""
    cache = stack.data_dir / "cache"
    with stack.client() as c:
        ids = upload(c, args.model, args.data, "digits")
        for mode, parallelism, concurrency in MODES:
            shutil.rmtree(cache, ignore_errors=True)
            with start_worker(stack, mode, concurrency=concurrency) as worker:
                run = JobRun(mode, parallelism, concurrency, args.trials)
                say(
                    f"  {result.name}: {mode} job ({args.trials} trials, parallelism "
                    f"{parallelism}, worker --concurrency {concurrency}) ..."
                )
                result.jobs[mode] = timed_job(c, worker, ids, run)
                say(f"  {result.name}: {mode} job {run.job_id}: {run.wall:.1f}s")
                if mode == "serial":
                    round_trips(c, worker, ids, args.round_trips, result)
                    say(f"  {result.name}: {len(result.to_running)} queue round trips done")
        job = result.jobs["parallel"].job_id
        for label, path in (("job", f"/v1/jobs/{job}"), ("trials", f"/v1/jobs/{job}/trials")):
            result.latency[label] = latency(c, path, args.requests)
        say(f"  {result.name}: API latency done")


@contextmanager
def embedded(work: Path) -> Iterator[Stack]:
    with start_api(work / "embedded") as stack:
        yield stack


@contextmanager
def postgres(work: Path, pg_url: str, redis_url: str) -> Iterator[Stack]:
    with ExitStack() as es:
        db = es.enter_context(postgres_database(pg_url))
        queue = es.enter_context(redis_queue(redis_url))
        extra = {"MPQ_BROKER_URL": redis_url, "MPQ_QUEUE": queue}
        yield es.enter_context(start_api(work / "postgres", database_url=db, **extra))


def unreachable(args: argparse.Namespace) -> str | None:
    """Why PostgreSQL or Redis cannot be reached (None when both answer)."""
    import redis
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(args.postgres_url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        return f"PostgreSQL unreachable at {args.postgres_url}: {exc.orig}"
    finally:
        engine.dispose()
    client = redis.Redis.from_url(args.redis_url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis unreachable at {args.redis_url}: {exc}"
    finally:
        client.close()
    return None


def ensure_digits(model: Path, data: Path) -> None:
    if model.is_file() and data.is_file():
        return
    say(f"building {model} and {data} with examples/digits.py ...")
    subprocess.run(
        [sys.executable, "examples/digits.py", "--out", str(model.parent)], cwd=ROOT, check=True
    )


# -- report ----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def opt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def p95(xs: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    s = sorted(xs)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def report(results: list[StackResult]) -> None:
    """The three tables, each followed by its ratios."""
    for r in results:
        if r.skipped is not None:
            say(f"{r.name}: SKIPPED ({r.skipped})")
    done = [r for r in results if r.skipped is None]
    if not done:
        return
    by_name = {r.name: r for r in done}
    pair = (by_name["embedded"], by_name["postgres"]) if len(by_name) == 2 else None
    say()
    report_jobs(done, pair)
    say()
    report_round_trips(done, pair)
    say()
    report_latency(done, pair)


Pair = tuple[StackResult, StackResult] | None


def report_jobs(done: list[StackResult], pair: Pair) -> None:
    say("1. job wall time (seconds from sending POST /v1/jobs; first poll, every 0.1 s)")
    head = (
        f"{'stack':<9} {'mode':<9} {'p':>1} {'conc':>4} {'trials':>6} {'prepare':>7} "
        f"{'1st tr':>6} {'trials':>6} {'tail':>5} {'wall':>6} {'trials/s':>8} {'phase/s':>7} "
        f"{'final s':>7} {'share':>5}"
    )
    say(head)
    say("-" * len(head))
    for r in done:
        for j in r.jobs.values():
            share = None if j.finalize_s is None else j.finalize_s / j.wall
            tail = None if j.all_done is None else j.wall - j.all_done
            say(
                f"{r.name:<9} {j.mode:<9} {j.parallelism:>1} {j.concurrency:>4} {j.trials:>6} "
                f"{opt(j.prepare):>7} {opt(j.first):>6} {opt(j.all_done):>6} {opt(tail):>5} "
                f"{j.wall:>6.1f} {j.rate:>8.2f} {opt(j.phase_rate, '.2f'):>7} "
                f"{opt(j.finalize_s, '.2f'):>7} {opt(share, '.0%'):>5}"
            )
    for r in done:
        s, p = r.jobs["serial"], r.jobs["parallel"]
        say(
            f"{r.name}, parallel / serial: wall {ratio(p.wall, s.wall)}, trials/s "
            f"{ratio(p.rate, s.rate)}, phase/s {ratio(p.phase_rate, s.phase_rate)}, "
            f"time to 1st trial {ratio(p.first, s.first)}"
        )
    if pair is not None:
        for mode, *_ in MODES:
            e, q = pair[0].jobs[mode], pair[1].jobs[mode]
            say(
                f"embedded / postgres, {mode}: wall {ratio(e.wall, q.wall)}, trials/s "
                f"{ratio(e.rate, q.rate)}, prepare {ratio(e.prepare, q.prepare)}, "
                f"phase/s {ratio(e.phase_rate, q.phase_rate)}"
            )


def hops(r: StackResult) -> list[float]:
    return [a - b for a, b in zip(r.to_running, r.run_job, strict=True)]


def report_round_trips(done: list[StackResult], pair: Pair) -> None:
    say("2. queue round trip, tiny job (1 trial) on a warm solo worker, ms")
    head = (
        f"{'stack':<9} {'n':>2} {'POST->running med':>17} {'min':>7} {'max':>7} "
        f"{'run_job med':>11} {'hop med':>7}"
    )
    say(head)
    say("-" * len(head))
    med = statistics.median
    for r in done:
        run = r.to_running
        say(
            f"{r.name:<9} {len(run):>2} {ms(med(run)):>17} {ms(min(run)):>7} {ms(max(run)):>7} "
            f"{ms(med(r.run_job)):>11} {ms(med(hops(r))):>7}"
        )
    if pair is not None:
        e, q = pair
        parts = (
            ("POST->running", med(e.to_running), med(q.to_running)),
            ("run_job", med(e.run_job), med(q.run_job)),
            ("hop", med(hops(e)), med(hops(q))),
        )
        say("embedded / postgres, medians: " + ", ".join(f"{n} {ratio(a, b)}" for n, a, b in parts))


def report_latency(done: list[StackResult], pair: Pair) -> None:
    say("3. API latency on the finished parallel job, workers stopped, ms")
    head = f"{'stack':<9} {'endpoint':<24} {'n':>4} {'median':>7} {'p95':>7} {'max':>7}"
    say(head)
    say("-" * len(head))
    paths = {"job": "GET /v1/jobs/{id}", "trials": "GET /v1/jobs/{id}/trials"}
    for r in done:
        for label, xs in r.latency.items():
            say(
                f"{r.name:<9} {paths[label]:<24} {len(xs):>4} {ms(statistics.median(xs)):>7} "
                f"{ms(p95(xs)):>7} {ms(max(xs)):>7}"
            )
    if pair is not None:
        for label in paths:
            xe, xq = pair[0].latency[label], pair[1].latency[label]
            say(
                f"embedded / postgres, {paths[label]}: median "
                f"{ratio(statistics.median(xe), statistics.median(xq))}, "
                f"p95 {ratio(p95(xe), p95(xq))}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="16 trials, 20 requests, 3 trips")
    parser.add_argument("--only", choices=("embedded", "postgres"))
    parser.add_argument("--trials", type=int, help="budget of the timed jobs (default 60)")
    parser.add_argument("--requests", type=int, help="GETs per endpoint (default 100)")
    parser.add_argument("--round-trips", type=int, help="tiny jobs per stack (default 5)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mpq-bench-service"))
    parser.add_argument("--model", type=Path, default=ROOT / "examples/out/digits.pt2")
    parser.add_argument("--data", type=Path, default=ROOT / "examples/out/digits.npz")
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="server on which a throwaway database is created (and dropped)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    args.trials = args.trials or (16 if args.quick else 60)
    args.requests = args.requests or (20 if args.quick else 100)
    args.round_trips = args.round_trips or (3 if args.quick else 5)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    say(f"command: {' '.join(sys.orig_argv)}")
    say(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {platform.machine()}, load avg {load}"
    )
    say(
        f"jobs: digits CNN, {args.trials} trials, space {','.join(SPACE)}, max_drop 0.01, "
        f"seed 0; {args.round_trips} round trips; {args.requests} requests per endpoint"
    )
    ensure_digits(args.model, args.data)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    start = time.perf_counter()
    results: list[StackResult] = []
    stacks: dict[str, Callable[[], Any]] = {
        "embedded": lambda: embedded(args.work),
        "postgres": lambda: postgres(args.work, args.postgres_url, args.redis_url),
    }
    for name, make in stacks.items():
        if args.only not in (None, name):
            continue
        result = StackResult(name)
        results.append(result)
        result.skipped = unreachable(args) if name == "postgres" else None
        if result.skipped is not None:
            continue
        say(f"{name}: starting")
        with make() as stack:
            measure(stack, args, result)
    report(results)
    say()
    say(f"total {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
