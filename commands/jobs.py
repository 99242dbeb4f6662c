"""``mpq jobs list|show|cancel|download|wait``: a team's service jobs from the command line.

- ``list [--status S] [--limit N] [--json]``: the newest jobs (``GET /v1/jobs``);
- ``show ID [--json]``: one job (``GET /v1/jobs/{id}``);
- ``cancel ID``: ``POST /v1/jobs/{id}/cancel`` (a finished job: 409, exit status 2);
- ``download ID DIR``: a succeeded job's files, each checked against its sha256;
- ``wait ID [--wait-timeout S] [--json]``: follow the job to its end; the exit status
  is ``mpq submit --wait``'s (0 met, 3 missed, 4 failed, 5 cancelled; 2, 1 as always).

The service and key are those of :mod:`commands.client` (``MPQ_URL``, ``MPQ_API_KEY``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from commands.client import EXIT_OK, add_connection_flags, client_from_args, reports_errors
from commands.follow import (
    FINAL,
    add_wait_flags,
    download_artifacts,
    job_line,
    report_end,
    wait_job,
)

__all__ = ["add_jobs_command"]

STATUSES = ("queued", "preparing", "running", "succeeded", "failed", "cancelled")
MAX_LIMIT = 100


def add_jobs_command(subparsers: Any) -> None:
    """Register ``mpq jobs`` and its subcommands."""
    jobs = subparsers.add_parser("jobs", help="list, show, cancel, wait for, download jobs")
    sub = jobs.add_subparsers(required=True, metavar="ACTION")

    p = sub.add_parser("list", help="the team's newest jobs")
    p.add_argument("--status", choices=STATUSES, help="only jobs in this status")
    p.add_argument("--limit", type=_limit, default=20, help=f"at most N (1 to {MAX_LIMIT})")
    p.add_argument("--json", action="store_true", help="print the API's list document")
    _common(p, _list)

    p = sub.add_parser("show", help="one job")
    p.add_argument("job_id", type=_job_id, metavar="ID")
    p.add_argument("--json", action="store_true", help="print the job's JSON document")
    _common(p, _show)

    p = sub.add_parser("cancel", help="cancel a queued or working job")
    p.add_argument("job_id", type=_job_id, metavar="ID")
    _common(p, _cancel)

    p = sub.add_parser("download", help="write a succeeded job's files into DIR")
    p.add_argument("job_id", type=_job_id, metavar="ID")
    p.add_argument("dir", type=Path, metavar="DIR")
    _common(p, _download)

    p = sub.add_parser("wait", help="follow a job to its end; the exit status says how")
    p.add_argument("job_id", type=_job_id, metavar="ID")
    add_wait_flags(p, flag=False)
    p.add_argument("--json", action="store_true", help="print the final job's JSON document")
    _common(p, _wait)


def _common(parser: argparse.ArgumentParser, command: Any) -> None:
    add_connection_flags(parser)
    parser.set_defaults(func=reports_errors(command))


def _list(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        page = client.get("/v1/jobs", status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps(page, indent=2))
        return EXIT_OK
    rows = [("ID", "STATUS", "PROGRESS", "MODEL", "DATA", "CREATED")]
    for job in page["data"]:
        doing = job_line(job).split(": ", 1)[1] if job["status"] not in FINAL else ""
        rows.append(
            (
                str(job["id"]),
                job["status"],
                doing if doing != job["status"] else "",
                str(job["model_id"]),
                str(job["dataset_id"]),
                str(job["created_at"])[:19].replace("T", " "),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(page['data'])} of {page['count']} job(s)", file=sys.stderr)
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        job = client.get(f"/v1/jobs/{args.job_id}")
    if args.json:
        print(json.dumps(job, indent=2))
        return EXIT_OK
    print(job_line(job))
    for key in ("model_id", "dataset_id", "trials_done", "trials_total", "created_at"):
        print(f"  {key}: {job[key]}")
    if job.get("finished_at"):
        print(f"  finished_at: {job['finished_at']}")
    if job.get("error_code"):
        print(f"  error: [{job['error_code']}] {job['error_message']}")
    result = job.get("result") or {}
    if "met_targets" in result:
        print(f"  met_targets: {str(result['met_targets']).lower()}")
    chosen = result.get("chosen") or {}
    if chosen:
        print(f"  chosen: metric {chosen.get('metric')}, {chosen.get('payload_bytes')} bytes")
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        job = client.post(f"/v1/jobs/{args.job_id}/cancel")
    print(f"job {job['id']}: {job['status']}")
    return EXIT_OK


def _download(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        job = client.get(f"/v1/jobs/{args.job_id}")
        for path in download_artifacts(client, job, args.dir):
            print(path)
    return EXIT_OK


def _wait(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        job = wait_job(client, args.job_id, timeout_s=args.wait_timeout)
    status = report_end(job)
    if args.json:
        print(json.dumps(job, indent=2))
    return status


def _job_id(text: str) -> int:
    value = int(text.removeprefix("id:"))
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text} is not a job id (a positive integer)")
    return value


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and {MAX_LIMIT}")
    return value
