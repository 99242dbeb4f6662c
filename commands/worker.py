"""``mpq worker``: a real Celery worker serving the job queue; ``mpq beat``: its scheduler.

``mpq beat`` runs Celery beat for the same app with :class:`workers.beat.DatabaseScheduler`:
the schedules (``/v1/schedules``) are read from the database every ``MPQ_BEAT_INTERVAL_S``
seconds, and no schedule file is kept (two beats against one database are safe).

Kept light (no Celery or torch import) until the command runs, because the ``mpq``
command line registers it on every invocation.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from service.private_files import UMASK, make_private_dir

__all__ = ["add_beat_command", "add_worker_command"]


def add_worker_command(subparsers: Any) -> None:
    """Register ``mpq worker [--concurrency N] [--loglevel L]``."""
    worker = subparsers.add_parser("worker", help="run a Celery worker for search jobs")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="jobs run at once (processes; default 1: the solo pool, one job at a time)",
    )
    worker.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING, ...")
    worker.add_argument("--hostname", help="the worker's node name (default: celery@HOST)")
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    os.umask(UMASK)  # artifacts, studies and the broker file are for its user only
    from workers.app import app

    queue = app.conf.task_default_queue
    argv = ["worker", "--loglevel", args.loglevel, "--queues", queue]
    argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    if args.concurrency <= 1:
        argv += ["--pool", "solo", "--concurrency", "1"]
    else:
        argv += ["--pool", "prefork", "--concurrency", str(args.concurrency)]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


def add_beat_command(subparsers: Any) -> None:
    """Register ``mpq beat [--loglevel L]``: Celery beat, firing the database's schedules."""
    beat = subparsers.add_parser("beat", help="run Celery beat (fires the schedules' jobs)")
    beat.add_argument(
        "--loglevel",
        type=str.upper,
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    )
    beat.set_defaults(func=_beat)


def _beat(args: argparse.Namespace) -> int:
    from service.settings import get_settings
    from workers.app import app
    from workers.beat import DatabaseScheduler

    os.umask(UMASK)
    make_private_dir(get_settings().data_dir)
    # Beat's SIGTERM/SIGINT handler raises SystemExit: status 0.
    app.Beat(loglevel=args.loglevel, scheduler=DatabaseScheduler).run()
    return 0
