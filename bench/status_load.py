"""Status reads under load: 50 clients polling a finished job, closed and open loop.

Run: ``.venv/bin/python bench/status_load.py [--only embedded|postgres] [--clients 50]
[--seconds 20] [--rate 1.0] [--trials 60] [--work DIR]``

Each stack is started from scratch with ``mpq up`` (the API and an idle worker, as a
user runs it) on a free port:

* ``embedded``: the default -- SQLite database and kombu's SQLite broker in a fresh
  ``MPQ_DATA_DIR``; the idle worker polls that broker every 50 ms;
* ``postgres``: a throwaway database on ``--postgres-url`` (dropped WITH FORCE after)
  and Redis at ``--redis-url`` with a queue of its own (its keys deleted after).

A real digits job (``--trials`` trials, built with ``examples/digits.py`` when
``examples/out`` lacks it) is run to success first, so ``GET /v1/jobs/{id}`` carries a
real ``result`` document (its size is printed). Then, with the worker idle:

1. closed loop: ``--clients`` clients, each on its own keep-alive connection, send a
   request as soon as the previous one is answered, for ``--seconds``;
2. open loop: each client sends ``--rate`` requests per second at fixed times (a
   random phase each), whether or not earlier ones were answered; latency counts from
   the planned send time, so a queue in front of the server is counted.

One client in ten polls the list (``GET /v1/jobs``), the others the job. A first
closed loop with one client (polling the job) gives the unloaded latency. Each phase
starts after 2 s of unmeasured warm-up. Latency percentiles are nearest-rank, over every
request answered during the measured window; a non-200 answer or a transport error is
counted as an error. The load generator runs on the same machine as the server (one
Python process, asyncio + httpx), sharing its CPUs.

Size: a little over 300 lines, kept in one file like the other benchmarks: starting
``mpq up``, the job, the two loops and the table are read together.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# The repository root goes first: this file's own directory, which Python puts on the
# path, is itself named like the ``service`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import (
    ROOT,
    StackError,
    free_port,
    postgres_database,
    redis_queue,
    service_env,
    upload,
)

STARTUP_S = 120.0
WARMUP_S = 2.0
LIST_EVERY = 10  # one client in LIST_EVERY polls the list


def say(msg: str = "") -> None:
    print(msg, flush=True)


@dataclass
class Up:
    """A running ``mpq up``: its URL, API key and process."""

    url: str
    key: str
    process: subprocess.Popen[str]


@contextmanager
def mpq_up(data_dir: Path, env: dict[str, str]) -> Iterator[Up]:
    """Start ``mpq up`` on a free port under ``env``; yield once it serves; SIGTERM it after."""
    port = free_port()
    log_path = data_dir / "up.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "commands", "up", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            key = _serving(proc, log_path)
            yield Up(f"http://127.0.0.1:{port}", key, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _serving(proc: subprocess.Popen[str], log_path: Path) -> str:
    """Read ``mpq up``'s stdout until it serves; the API key it printed."""
    assert proc.stdout is not None
    key = ""
    deadline = time.monotonic() + STARTUP_S
    for line in proc.stdout:
        if line.startswith("API key: "):
            key = line.split(": ", 1)[1].strip()
        if line.startswith("MPQ is serving at "):
            if not key:
                raise StackError("mpq up printed no API key (not a fresh data directory?)")
            return key
        if time.monotonic() > deadline:
            break
    raise StackError(f"mpq up did not serve:\n{log_path.read_text(errors='replace')}")


def digits_files() -> tuple[Path, Path]:
    model, data = ROOT / "examples/out/digits.pt2", ROOT / "examples/out/digits.npz"
    if not (model.exists() and data.exists()):
        say("building examples/out/digits.* with examples/digits.py ...")
        subprocess.run(
            [sys.executable, "examples/digits.py", "--out", str(model.parent)],
            cwd=ROOT,
            check=True,
        )
    return model, data


def finished_job(up: Up, trials: int) -> int:
    """Upload digits, run a job of ``trials`` trials to success; its id."""
    model, data = digits_files()
    headers = {"Authorization": f"Bearer {up.key}"}
    with httpx.Client(base_url=up.url, headers=headers, timeout=120) as c:
        model_id, dataset_id = upload(c, model, data, "digits")
        body = {
            "model_id": model_id,
            "dataset_id": dataset_id,
            "metric": "accuracy",
            "targets": {"max_drop": 0.01},
            "space": ["int2", "int3", "int4", "int8", "cb16"],
            "budget": {"trials": trials},
            "seed": 0,
        }
        r = c.post("/v1/jobs", json=body)
        if r.status_code != 202:
            raise StackError(f"POST /v1/jobs answered {r.status_code}: {r.text}")
        job_id = int(r.json()["id"])
        deadline = time.monotonic() + 900
        while (status := c.get(f"/v1/jobs/{job_id}").json()["status"]) != "succeeded":
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                raise StackError(f"job {job_id} ended {status}")
            time.sleep(0.5)
        size = len(c.get(f"/v1/jobs/{job_id}").content)
        listed = len(c.get("/v1/jobs").content)
    say(f"job {job_id}: GET /v1/jobs/{{id}} body {size:,} bytes, GET /v1/jobs {listed:,} bytes")
    return job_id


@dataclass
class Samples:
    """Latencies (seconds) of answered requests, per route, and the errors."""

    by_route: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, route: str, seconds: float) -> None:
        self.by_route.setdefault(route, []).append(seconds)


async def _request(
    client: httpx.AsyncClient, route: str, path: str, planned: float, out: Samples, end: float
) -> None:
    try:
        r = await client.get(path)
        ok = r.status_code == 200
    except httpx.HTTPError as exc:
        ok = False
        out.failures.append(f"{type(exc).__name__}: {exc}")
    done = time.perf_counter()
    if planned < end and done >= planned:
        if ok:
            out.add(route, done - planned)
        else:
            out.errors += 1


async def _client(
    i: int, up: Up, job_id: int, *, open_rate: float | None, start: float, end: float, out: Samples
) -> None:
    lists = i % LIST_EVERY == LIST_EVERY - 1
    route, path = ("list", "/v1/jobs") if lists else ("job", f"/v1/jobs/{job_id}")
    headers = {"Authorization": f"Bearer {up.key}"}
    limits = httpx.Limits(max_connections=None if open_rate else 1)
    async with httpx.AsyncClient(
        base_url=up.url, headers=headers, timeout=60, limits=limits
    ) as client:
        if open_rate is None:  # closed loop: the next request once this one is answered
            while (now := time.perf_counter()) < end:
                sink = out if now >= start else Samples()
                await _request(client, route, path, now, sink, end)
            return
        period = 1.0 / open_rate
        planned = start - WARMUP_S + random.Random(i).uniform(0, period)
        pending = []
        while planned < end:
            await asyncio.sleep(max(0.0, planned - time.perf_counter()))
            sink = out if planned >= start else Samples()
            pending.append(asyncio.create_task(_request(client, route, path, planned, sink, end)))
            planned += period
        await asyncio.gather(*pending)


async def load(
    up: Up, job_id: int, *, clients: int, seconds: float, open_rate: float | None
) -> Samples:
    """Run ``clients`` clients for WARMUP_S + ``seconds``; the measured window's samples."""
    out = Samples()
    start = time.perf_counter() + WARMUP_S
    end = start + seconds
    await asyncio.gather(
        *(
            _client(i, up, job_id, open_rate=open_rate, start=start, end=end, out=out)
            for i in range(clients)
        )
    )
    return out


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def report(stack: str, loop: str, samples: Samples, seconds: float) -> list[str]:
    rows = []
    every = [s for v in samples.by_route.values() for s in v]
    for route, values in [("all", every), *sorted(samples.by_route.items())]:
        if not values:
            continue
        ms = [1000 * v for v in values]
        rows.append(
            f"| {stack} | {loop} | {route} | {len(values)} | {len(values) / seconds:.1f} | "
            f"{pct(ms, 0.5):.1f} | {pct(ms, 0.9):.1f} | {pct(ms, 0.99):.1f} | {max(ms):.1f} | "
            f"{samples.errors if route == 'all' else ''} |"
        )
    return rows


@contextmanager
def stack_env(name: str, work: Path, args: argparse.Namespace) -> Iterator[dict[str, str]]:
    data_dir = work / name
    # The clients share one API key; 50 real clients would have keys of their own, so the
    # per-key rate limit (MPQ_RATE_LIMIT_PER_S) is off: this measures the read path.
    unlimited = {"MPQ_RATE_LIMIT_PER_S": "0"}
    if name == "embedded":
        yield service_env(data_dir, **unlimited)
        return
    with postgres_database(args.postgres_url) as url, redis_queue(args.redis_url) as queue:
        yield service_env(
            data_dir,
            database_url=url,
            MPQ_BROKER_URL=args.redis_url,
            MPQ_QUEUE=queue,
            **unlimited,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--only", choices=["embedded", "postgres"])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1.0, help="open loop: polls/s per client")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--work", type=Path, help="data directories (default: a temporary one)")
    parser.add_argument(
        "--postgres-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    args = parser.parse_args()
    stacks = [args.only] if args.only else ["embedded", "postgres"]
    say(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpq-status-load-") as tmp:
        work = args.work or Path(tmp)
        for name in stacks:
            with stack_env(name, work, args) as env, mpq_up(work / name, env) as up:
                job_id = finished_job(up, args.trials)
                loops = [
                    ("1 client", 1, None),
                    ("closed", args.clients, None),
                    (f"open {args.rate:g}/s", args.clients, args.rate),
                ]
                for loop, clients, rate in loops:
                    samples = asyncio.run(
                        load(up, job_id, clients=clients, seconds=args.seconds, open_rate=rate)
                    )
                    new = report(name, loop, samples, args.seconds)
                    rows += new
                    say(new[0] if new else f"{name} {loop}: no answer, {samples.errors} errors")
    say()
    say("| stack | loop | route | requests | req/s | p50 ms | p90 ms | p99 ms | max ms | errors |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        say(row)


if __name__ == "__main__":
    main()
