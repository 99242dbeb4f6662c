"""The dashboard's jobs page with 10,000 jobs: latency of ``/ui/jobs`` and its live rows.

Run: ``.venv/bin/python bench/dashboard_jobs.py [--jobs 10000] [--requests 30]
[--result-trials 300] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
[--work DIR]``

A fresh database (SQLite in a temporary data directory; with ``--database-url``, a
throwaway PostgreSQL database on that server, dropped after) is migrated and given one
team and its key (``mpq admin``), two more keys, the real digits model and data uploaded
over the API (so the model row carries a real inventory) and four more model rows with the
same inventory (5 models: ``digits`` v1-v3, ``mobilenet`` v1-v2). Then ``--jobs`` job rows
are inserted in bulk (SQLAlchemy core, one executemany per 1,000 rows): a real
``JobSpec`` as ``config``, progress documents, ``baseline`` and ``best`` shaped as a real
job's, mostly ``succeeded`` (each with a large ``result`` document: the real digits result
with a front and finalists of ``--result-trials`` trials and the sensitivity of 60 layers,
about 100 kB), some ``failed`` and ``cancelled``, and 20 active (queued, preparing, running).

The API runs under uvicorn (``bench/_stack.py``, rate limit off). Signed in through
``/ui/signin`` with the team's key, each route is asked ``--requests`` times after 3
unmeasured requests, one at a time on one keep-alive connection (httpx, same machine):
the jobs page's first page, its filters (status, model, key), a deep page
(``skip=5000``) and the live fragment ``/ui/jobs/rows``; the baseline, in the same run,
is the REST API's JSON list ``GET /v1/jobs?limit=50`` (Bearer key). Then the same
routes are asked in-process (``create_app`` through ``httpx.ASGITransport``, the app's
lifespan run around it), which is the server's time without the socket and the client.
Percentiles are nearest-rank; the target is p95 < 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

# The repository root goes first: this file's own directory, which Python puts on the
# path, is itself named like the ``service`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import ROOT, Stack, mpq, postgres_database, start_api, upload
from search import JobSpec
from service.db import make_engine
from service.db.models import ApiKey, Job, JobStatus, Model
from service.progress import progress_doc

TARGET_MS = 300.0
WARMUP = 3
CHUNK = 1000
ACTIVE = 20
MODELS = [("digits", 1), ("digits", 2), ("digits", 3), ("mobilenet", 1), ("mobilenet", 2)]
SENSITIVITY_LAYERS = 60
WEIGHTS = ("int2", "int3", "int4", "int5", "int6", "int8", "cb4", "cb16")
FORMATS = [f"{w}/{r}/a8" for w in WEIGHTS for r in ("nearest", "gptq")]
REAL_CONFIG: dict[str, Any] = {
    "metric": "accuracy",
    "targets": {"max_drop": 0.01},
    "rounding": ["nearest", "gptq"],
    "activation": ["a8"],
    "budget": {"trials": 300},
    "seed": 0,
    "parallelism": 2,
    "holdout": 0.25,
}


def say(msg: str = "") -> None:
    print(msg, flush=True)


@dataclass(frozen=True)
class Filled:
    """What the filled database holds that the routes name."""

    team_id: int
    key_ids: list[int]
    model_names: list[str]
    result_bytes: int


def digits_files() -> tuple[Path, Path]:
    """``examples/out/digits.{pt2,npz}``, built with ``examples/digits.py`` when missing."""
    model, data = ROOT / "examples/out/digits.pt2", ROOT / "examples/out/digits.npz"
    if not (model.exists() and data.exists()):
        say("building examples/out/digits.* with examples/digits.py ...")
        script = [sys.executable, "examples/digits.py", "--out", str(model.parent)]
        subprocess.run(script, cwd=ROOT, check=True)
    return model, data


def _trial(number: int, rng: random.Random, layers: list[str]) -> dict[str, Any]:
    """A trial as the search records it (the shape of ``GET /v1/jobs/{id}/trials``)."""
    plan = {name: rng.choice(FORMATS) for name in layers}
    return {
        "number": number,
        "state": "complete",
        "metric": round(0.95 + 0.05 * rng.random(), 6),
        "bytes": rng.randrange(1500, 23000),
        "feasible": rng.random() < 0.7,
        "source": rng.choice(["tpe", "descent", "ilp", "uniform:int8/gptq/a8"]),
        "seconds": rng.random() / 10,
        "prefix_values": [rng.random(), rng.random()],
        "pruned_by": None,
        "retry_of": None,
        "runner": number % 2,
        "plan": plan,
    }


def _documents(layers: list[str], trials: int) -> tuple[dict[str, Any], ...]:
    """(baseline, best, result) documents shaped as a real digits job's."""
    rng = random.Random(0)
    baseline = {
        "metric": 0.9950617283950617,
        "bytes": 22760,
        "heldout": {"metric": 0.9926, "ci": [0.9592, 0.9987], "samples": 135, "level": 0.95},
    }
    best = _trial(21, rng, layers) | {"metric": 0.9901234567901235, "bytes": 1938}
    finalists = [
        {
            "number": t["number"],
            "metric": t["metric"],
            "bytes": t["bytes"],
            "integer_metric": t["metric"] - 0.005,
            "integer_only": "full",
            "integer_meets_floor": True,
            "plan": t["plan"],
            "prefix_values": t["prefix_values"],
        }
        for t in (_trial(n, rng, layers) for n in range(trials))
    ]
    sensitivity = {
        f"layer{i}": {f: rng.random() / 10 for f in FORMATS} for i in range(SENSITIVITY_LAYERS)
    }
    layer = {"weight": "int5", "activation": "a8", "rounding": "gptq", "scale": "mse"}
    result = {
        "config": REAL_CONFIG,
        "baseline": baseline,
        "targets": {"metric_floor": 0.9850617283950617, "heldout_metric_floor": 0.98},
        "met_targets": True,
        "met_on_search": True,
        "holdout": {"fraction": 0.25, "search_samples": 405, "heldout_samples": 135},
        "front": list(range(trials)),
        "finalists": finalists,
        "uniform": [{"plan": "int8/gptq/a8", "metric": 0.995, "bytes": 6080, "trial": 0}],
        "chosen": {"trial": 21, "plan": {"version": 1, "layers": dict.fromkeys(layers, layer)}},
        "sensitivity": sensitivity,
        "sensitivity_method": "full",
        "evaluations_until_target": 1,
        "timings": {"finalize_s": 0.22},
    }
    return baseline, best, result


def _job_rows(
    n: int,
    *,
    team_id: int,
    model_ids: list[int],
    dataset_id: int,
    key_ids: list[int],
    layers: list[str],
    result_trials: int,
) -> Iterator[dict[str, Any]]:
    """``n`` job rows, oldest first; the newest :data:`ACTIVE` are queued/preparing/running."""
    rng = random.Random(1)
    config = JobSpec.from_json(REAL_CONFIG).to_json()
    baseline, best, result = _documents(layers, result_trials)
    start = datetime.now(UTC) - timedelta(days=60)
    step = timedelta(days=60) / n
    for i in range(n):
        created = start + i * step
        left = n - i
        if left <= ACTIVE:
            status = [JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.RUNNING][left % 3]
        else:
            roll = rng.random()
            status = (
                JobStatus.FAILED
                if roll < 0.05
                else JobStatus.CANCELLED
                if roll < 0.08
                else JobStatus.SUCCEEDED
            )
        done = {JobStatus.QUEUED: 0, JobStatus.PREPARING: 0, JobStatus.RUNNING: 120}.get(
            status, 300 if status == JobStatus.SUCCEEDED else rng.randrange(0, 300)
        )
        final = status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
        progress = {
            JobStatus.QUEUED: None,
            JobStatus.PREPARING: progress_doc("preparing", step="sensitivity", done=12, total=50),
        }.get(status, progress_doc("finalizing" if final else "searching", done=done, total=300))
        yield {
            "team_id": team_id,
            "model_id": rng.choice(model_ids),
            "dataset_id": dataset_id,
            "status": status,
            "config": config,
            "study_name": f"job-{i + 1}",
            "trials_done": done,
            "trials_total": 300,
            "baseline": None if status == JobStatus.QUEUED else baseline,
            "best": best if done else None,
            "result": result if status == JobStatus.SUCCEEDED else None,
            "error_code": "eval_failed" if status == JobStatus.FAILED else None,
            "error_message": "the model raised on the data" if status == JobStatus.FAILED else None,
            "created_at": created,
            "started_at": None if status == JobStatus.QUEUED else created + timedelta(seconds=2),
            "finished_at": created + timedelta(minutes=4) if final else None,
            "heartbeat_at": None if status == JobStatus.QUEUED else created,
            "progress": progress,
            "created_by_key_id": rng.choice(key_ids),
        }


def fill(stack: Stack, *, jobs: int, result_trials: int) -> Filled:
    """Keys, models and ``jobs`` job rows in ``stack``'s database (see the module doc)."""
    from sqlalchemy import insert, select

    for name in ("ci", "notebook"):
        mpq(stack.env, "admin", "create-key", "--team", "bench", "--name", name)
    with stack.client() as c:
        model_id, dataset_id = upload(c, *digits_files(), "digits")
    engine = make_engine(stack.env["MPQ_DATABASE_URL"])
    try:
        with engine.begin() as conn:
            real = conn.execute(select(Model.__table__).where(Model.id == model_id)).one()._asdict()
            key_ids = list(conn.scalars(select(ApiKey.id).where(ApiKey.team_id == real["team_id"])))
            for name, version in MODELS[1:]:
                row = {k: v for k, v in real.items() if k != "id"}
                conn.execute(insert(Model), [row | {"name": name, "version": version}])
            model_ids = list(conn.scalars(select(Model.id)))
        layers = [layer["name"] for layer in real["inventory"]["layers"]]
        rows = _job_rows(
            jobs,
            team_id=real["team_id"],
            model_ids=model_ids,
            dataset_id=dataset_id,
            key_ids=key_ids,
            layers=layers,
            result_trials=result_trials,
        )
        t0 = time.perf_counter()
        with engine.begin() as conn:
            chunk: list[dict[str, Any]] = []
            for row in rows:
                chunk.append(row)
                if len(chunk) == CHUNK:
                    conn.execute(insert(Job), chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(Job), chunk)
        say(f"inserted {jobs:,} jobs in {time.perf_counter() - t0:.1f} s")
    finally:
        engine.dispose()
    size = len(json.dumps(_documents(layers, result_trials)[2]))
    names = sorted({name for name, _ in MODELS})
    return Filled(real["team_id"], key_ids, names, size)


def sign_in(url: str, key: str) -> str:
    """Sign in through ``/ui/signin`` as a browser does; the ``mpq_session`` cookie."""
    with httpx.Client(base_url=url, timeout=60) as c:
        c.get("/ui/signin")
        csrf = c.cookies["mpq_signin"]
        r = c.post("/ui/signin", data={"key": key, "csrf": csrf, "next": "/ui/jobs"})
        if r.status_code != 303 or "mpq_session" not in r.cookies:
            raise RuntimeError(f"sign-in answered {r.status_code}: {r.text[:500]}")
        return str(r.cookies["mpq_session"])


def routes(filled: Filled) -> list[tuple[str, str]]:
    """(label, path) of each timed route; the baseline first."""
    return [
        ("baseline: GET /v1/jobs?limit=50", "/v1/jobs?limit=50"),
        ("/ui/jobs", "/ui/jobs"),
        ("/ui/jobs?status=running", "/ui/jobs?status=running"),
        (f"/ui/jobs?model={filled.model_names[0]}", f"/ui/jobs?model={filled.model_names[0]}"),
        (f"/ui/jobs?key={filled.key_ids[1]}", f"/ui/jobs?key={filled.key_ids[1]}"),
        ("/ui/jobs?skip=5000", "/ui/jobs?skip=5000"),
        ("/ui/jobs/rows", "/ui/jobs/rows"),
    ]


def _headers(path: str, key: str, token: str) -> dict[str, str]:
    if path.startswith("/v1"):
        return {"Authorization": f"Bearer {key}"}
    return {"Cookie": f"mpq_session={token}"}


async def time_routes(
    client: httpx.AsyncClient, paths: list[tuple[str, str]], key: str, token: str, n: int
) -> dict[str, tuple[list[float], int]]:
    """Each path asked WARMUP + ``n`` times, one at a time: (seconds of the last n, bytes)."""
    out = {}
    for label, path in paths:
        headers = _headers(path, key, token)
        seconds, size = [], 0
        for i in range(WARMUP + n):
            t0 = time.perf_counter()
            r = await client.get(path, headers=headers)
            elapsed = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:500]}")
            size = len(r.content)
            if i >= WARMUP:
                seconds.append(elapsed)
        out[label] = (seconds, size)
    return out


async def over_http(url: str, paths: list[tuple[str, str]], key: str, token: str, n: int) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        return await time_routes(client, paths, key, token, n)


async def in_process(
    env: dict[str, str], paths: list[tuple[str, str]], key: str, token: str, n: int
) -> Any:
    """The same requests through ``httpx.ASGITransport`` on ``create_app(settings)``."""
    from service.main import create_app
    from service.settings import Settings

    settings = Settings(
        data_dir=Path(env["MPQ_DATA_DIR"]),
        database_url=env["MPQ_DATABASE_URL"],
        rate_limit_per_s=0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            return await time_routes(client, paths, key, token, n)


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def table(where: str, timed: dict[str, tuple[list[float], int]]) -> list[str]:
    base = pct(next(iter(timed.values()))[0], 0.5)
    rows = []
    for label, (seconds, size) in timed.items():
        ms = [1000 * s for s in seconds]
        p95 = pct(ms, 0.95)
        verdict = "PASS" if p95 < TARGET_MS else "MISS"
        rows.append(
            f"| {where} | {label} | {size:,} | {pct(ms, 0.5):.1f} | {p95:.1f} | {max(ms):.1f} | "
            f"{pct(seconds, 0.5) / base:.2f}x | {verdict} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per route")
    parser.add_argument("--result-trials", type=int, default=300)
    parser.add_argument("--database-url", help="a PostgreSQL server (a throwaway database)")
    parser.add_argument("--work", type=Path, help="data directory (default: a temporary one)")
    args = parser.parse_args()
    say(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="mpq-dashboard-jobs-") as tmp:
        data_dir = args.work or Path(tmp)
        database = postgres_database(args.database_url) if args.database_url else nullcontext()
        with database as url, start_api(data_dir, database_url=url, MPQ_RATE_LIMIT_PER_S="0") as s:
            filled = fill(s, jobs=args.jobs, result_trials=args.result_trials)
            say(f"a succeeded job's result document: {filled.result_bytes:,} bytes")
            token = sign_in(s.url, s.key)
            paths = routes(filled)
            http = asyncio.run(over_http(s.url, paths, s.key, token, args.requests))
            server = asyncio.run(in_process(s.env, paths, s.key, token, args.requests))
    say()
    backend = "PostgreSQL" if args.database_url else "SQLite"
    say(
        f"{backend}, {args.jobs:,} jobs, {args.requests} requests a route after {WARMUP} "
        f"warm-up; target p95 < {TARGET_MS:.0f} ms"
    )
    say("| where | route | body B | p50 ms | p95 ms | max ms | p50 vs baseline | target |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in table("HTTP", http) + table("in-process", server):
        say(row)


if __name__ == "__main__":
    main()
