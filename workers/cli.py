"""``mpq worker``: a real Celery worker serving the job queue.

Kept light (no Celery or torch import) until the command runs, because the ``mpq`` CLI
registers it on every invocation.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_worker_command"]


def add_worker_command(subparsers: Any) -> None:
    """Register ``mpq worker [--concurrency N] [--loglevel L]``."""
    worker = subparsers.add_parser("worker", help="run a Celery worker for search jobs")
    worker.add_argument(
        "--concurrency", type=int, default=1,
        help="jobs run at once (processes; default 1: the solo pool, one job at a time)",
    )  # fmt: skip
    worker.add_argument("--loglevel", default="INFO", help="DEBUG, INFO, WARNING, ...")
    worker.add_argument("--hostname", help="the worker's node name (default: celery@HOST)")
    worker.set_defaults(func=_worker)


def _worker(args: argparse.Namespace) -> int:
    from workers.app import app

    queue = app.conf.task_default_queue
    argv = ["worker", "--loglevel", args.loglevel, "--queues", queue, "--without-gossip",
            "--without-mingle", "--without-heartbeat"]  # fmt: skip
    if args.concurrency <= 1:
        argv += ["--pool", "solo", "--concurrency", "1"]
    else:
        argv += ["--pool", "prefork", "--concurrency", str(args.concurrency)]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0
