"""``mpq beat`` as real processes: it fires the database's schedules, once per due time.

Two beats run against one database (a SQLite file, then PostgreSQL) with a schedule every
minute, real time and a real cron: each due time gets one run row and one job, whichever
beat wins; one beat SIGKILLed and restarted mid-minute fires nothing twice; schedules
whose due times passed while no beat ran fire once, for the latest due time only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from search import JobSpec
from service.db import Job, make_engine, session_factory
from service.db.migrate import upgrade
from service.db.models import Schedule, ScheduleRun
from service.db.repos import create_team
from service.domain import create_schedule
from service.settings import Settings
from tests.service.api.conftest import ROOT
from tests.service.conftest import throwaway_postgres
from tests.service.db.rows import add_dataset, add_model
from workers.beat import _stop_signals_deferred

STARTUP_S = 60


def beat_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPQ_")}
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env | {"MPQ_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **extra}


@contextmanager
def beat(
    env: dict[str, str], log_path: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``mpq beat``; wait until it says it started; SIGTERM it (status 0) afterwards."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "commands", "beat", "--loglevel", "INFO"],
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + STARTUP_S
            while "beat: Starting..." not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, log_path.read_text(errors="replace")
                assert time.monotonic() < deadline, "beat did not start in 60 s"
                time.sleep(0.2)
            yield proc
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0, log_path.read_text(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_beat_starts_keeps_no_schedule_file_and_stops_cleanly(tmp_path: Path) -> None:
    data, cwd = tmp_path / "data", tmp_path / "cwd"
    cwd.mkdir()
    log_path = tmp_path / "beat.log"
    with beat(beat_env(data), log_path, cwd=cwd):
        pass
    output = log_path.read_text(errors="replace")
    assert "Traceback" not in output and "CRITICAL" not in output, output
    assert output.count("beat: stopping") == 1, output
    assert not list(data.glob("celerybeat-schedule*")), "the schedules live in the database"
    assert not list(cwd.iterdir())


def _minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def _runs(session: Session, schedule_id: int) -> list[ScheduleRun]:
    session.rollback()
    query = select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id)
    return list(session.scalars(query.order_by(ScheduleRun.due_at)))


def _wait_run(session: Session, schedule_id: int, due: datetime, timeout: float) -> None:
    """Wait until the run due at ``due`` has submitted its job (or recorded why not): a beat
    claims the due time before it submits, and one killed in between loses that run."""
    deadline = time.monotonic() + timeout
    while due not in _settled(session, schedule_id):
        assert time.monotonic() < deadline, f"no run of schedule {schedule_id} for {due}"
        time.sleep(0.5)


def _wait_first_run(session: Session, schedule_id: int, timeout: float) -> datetime:
    """The due time of ``schedule_id``'s first run, once it has submitted its job."""
    deadline = time.monotonic() + timeout
    while not (settled := _settled(session, schedule_id)):
        assert time.monotonic() < deadline, f"no run of schedule {schedule_id}"
        time.sleep(0.5)
    return min(settled)


def _settled(session: Session, schedule_id: int) -> set[datetime]:
    return {r.due_at for r in _runs(session, schedule_id) if r.job_id or r.error_code}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_beats_fire_each_due_time_once(tmp_path: Path, backend: str) -> None:
    with throwaway_postgres() if backend == "postgres" else _sqlite(tmp_path) as url:
        _two_beats(tmp_path, url)


@contextmanager
def _sqlite(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'mpq.db'}"


def _two_beats(tmp_path: Path, url: str) -> None:
    data = tmp_path / "data"
    upgrade(url)
    settings = Settings(data_dir=data, database_url=url)
    engine = make_engine(url)
    with session_factory(engine)() as session:
        team = create_team(session, name="acme")
        model = add_model(session, team)
        dataset = add_dataset(session, team, model)
        now = datetime.now(UTC)

        def schedule(name: str, cron: str) -> int:
            spec = JobSpec(metric="agreement", trials=2)
            row = create_schedule(
                session,
                team=team,
                name=name,
                cron=cron,
                timezone="UTC",
                model_name="digits",
                model_alias=None,
                dataset_id=dataset.id,
                spec=spec,
                settings=settings,
            )
            return row.id

        every = schedule("every-minute", "* * * * *")
        today = now - timedelta(minutes=5)  # a daily time that passed 5 minutes ago
        daily = schedule("daily", f"{today.minute} {today.hour} * * *")
        # Both "created" three days ago while no beat ran: missed due times galore.
        days_ago = now - timedelta(days=3)
        session.execute(update(Schedule).values(created_at=days_ago, updated_at=days_ago))
        session.commit()

        env = beat_env(data, MPQ_DATABASE_URL=url, MPQ_BEAT_INTERVAL_S="1")
        logs = [tmp_path / "beat-a.log", tmp_path / "beat-b.log"]
        began = datetime.now(UTC)
        with beat(env, logs[1]):
            with beat(env, logs[0]) as a:
                # The first run is the minute of the first sweep, by either beat: a
                # minute may turn while the second one starts.
                first = _wait_first_run(session, every, timeout=30)
                assert _minute(began) <= first <= _minute(datetime.now(UTC))
                a.kill()  # mid-minute, after the minute fired
                a.wait()
            with beat(env, logs[0]):  # restarted in the same minute (most likely)
                _wait_run(session, every, first + timedelta(minutes=1), timeout=90)
        ended = datetime.now(UTC)

        runs = _runs(session, every)
        expected = [first + timedelta(minutes=i) for i in range(len(runs))]
        assert [r.due_at for r in runs] == expected  # no older catch-up, no gap, no double
        assert len(runs) <= int((ended - first).total_seconds() // 60) + 1
        assert all(r.job_id is not None and r.error_code is None for r in runs), runs
        jobs = session.scalars(select(Job).where(Job.schedule_id == every)).all()
        assert sorted(j.id for j in jobs) == sorted(r.job_id for r in runs)  # one job each
        [once] = _runs(session, daily)  # the latest missed day only
        assert once.due_at == _minute(today) and once.job_id is not None
        daily_jobs = session.scalars(select(Job).where(Job.schedule_id == daily)).all()
        assert [j.id for j in daily_jobs] == [once.job_id]
    engine.dispose()
    for log in logs:
        text = log.read_text(errors="replace")
        assert "Traceback" not in text and "CRITICAL" not in text, text


def test_a_sweep_holds_a_stop_signal_until_it_has_finished() -> None:
    """Celery's beat raises SystemExit from its SIGTERM handler wherever the main thread is;
    inside a sweep that cut a database call short (a traceback of a half-closed connection
    in a beat stopped mid-sweep, once). The sweep defers the signal to its end instead."""
    seen: list[str] = []

    def handler(signum: int, frame: object) -> None:
        seen.append(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with _stop_signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert seen == []  # held back while the sweep runs
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == ["SIGTERM"]  # handled once the sweep is over
    finally:
        signal.signal(signal.SIGTERM, previous)
