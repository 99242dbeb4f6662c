"""Following a service job from the command line: waiting, progress, exit status, artifacts.

:func:`wait_job` polls ``GET /v1/jobs/{id}`` until the job is final, every
:data:`FIRST_POLL_S` growing by :data:`BACKOFF` to :data:`MAX_POLL_S`. On a terminal
(stderr a TTY) it keeps one progress line up to date: a bar of ``done``/``total`` and the
words of :func:`service.progress.describe` (``[####----------------] job 12: searching:
8/40, ~1m05s left``); elsewhere (CI logs) it prints a plain line, without the bar, when
the status changes, and when only the progress moved at most every :data:`LOG_EVERY_S`
seconds. Everything goes to stderr: stdout is the command's result.
A service that stops answering (an API being restarted) is polled again for up to
:data:`OUTAGE_S` seconds before the wait gives up with status 1.

:func:`job_exit_status` turns a final job into the pipeline's exit status (0 met, 3
missed, 4 failed, 5 cancelled); :func:`download_artifacts` writes a job's files,
each checked against the sha256 the API lists for it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from commands.client import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_MISSED,
    EXIT_OK,
    EXIT_SERVICE,
    Client,
    ClientError,
)
from service.progress import describe

__all__ = [
    "FINAL",
    "add_wait_flags",
    "download_artifacts",
    "job_exit_status",
    "job_line",
    "positive_seconds",
    "report_end",
    "wait_job",
]

FINAL = ("succeeded", "failed", "cancelled")
FIRST_POLL_S = 1.0
BACKOFF = 1.5
MAX_POLL_S = 5.0
LOG_EVERY_S = 10.0
OUTAGE_S = 120.0
CLEAR_LINE = "\x1b[K"
BAR_WIDTH = 20


def job_line(job: dict[str, Any]) -> str:
    """``job 12: searching: 8/40, ~1m05s left`` (or the bare status when not working)."""
    progress = job.get("progress")
    if job["status"] in ("preparing", "running") and progress:
        return f"job {job['id']}: {describe(progress)}"
    return f"job {job['id']}: {job['status']}"


def wait_job(
    client: Client,
    job_id: int,
    *,
    timeout_s: float | None = None,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Poll job ``job_id`` until it is final (see the module docstring); return it.

    Raises:
        ClientError: ``timeout_s`` passed first (``wait_timeout``, status 1; the job goes
            on), the service failed to answer for :data:`OUTAGE_S` seconds (status 1),
            or refused the request (a 4xx, status 2).
    """
    out = sys.stderr if stream is None else stream
    line = _Line(out, tty=out.isatty())
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    poll = FIRST_POLL_S
    lost_since: float | None = None
    try:
        while True:
            try:
                job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
            except ClientError as exc:
                lost_since = _lost(exc, lost_since, line)
                job = {"id": job_id, "status": "unknown (the service does not answer)"}
                poll = MAX_POLL_S
            else:
                lost_since = None
                line.show(job)
                if job["status"] in FINAL:
                    return job
            if deadline is not None and time.monotonic() + poll > deadline:
                raise ClientError(
                    "wait_timeout",
                    f"job {job_id} is still {job['status']} after {timeout_s:g} s "
                    f"(--wait-timeout); it goes on: follow it with `mpq jobs wait {job_id}` "
                    f"or stop it with `mpq jobs cancel {job_id}`",
                    exit_status=EXIT_SERVICE,
                )
            time.sleep(poll)
            poll = min(poll * BACKOFF, MAX_POLL_S)
    finally:
        line.end()


def _lost(exc: ClientError, since: float | None, line: _Line) -> float:
    """Bear an unreachable service (an API restarting) for :data:`OUTAGE_S`; when it began.

    Raises:
        ClientError: ``exc`` itself, when it is no outage (a 4xx) or it lasted too long.
    """
    now = time.monotonic()
    if exc.exit_status != EXIT_SERVICE or (since is not None and now - since > OUTAGE_S):
        raise exc
    if since is None:
        line.note(f"{exc.message}; trying again for up to {OUTAGE_S:g} s")
    return now if since is None else since


class _Line:
    """The progress of a waited-for job on ``out``: one rewritten line, or logged lines."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out, self.tty = out, tty
        self._status: str | None = None
        self._text: str | None = None
        self._at = -LOG_EVERY_S
        self._drawn = False

    def show(self, job: dict[str, Any]) -> None:
        text = job_line(job)
        if self.tty:
            self.out.write(f"\r{_bar(job)}{text}{CLEAR_LINE}")
            self.out.flush()
            self._drawn = True
            return
        now = time.monotonic()
        changed_status = job["status"] != self._status
        if changed_status or (text != self._text and now - self._at >= LOG_EVERY_S):
            print(text, file=self.out, flush=True)
            self._status, self._text, self._at = job["status"], text, now

    def note(self, text: str) -> None:
        """A message on a line of its own (the progress line, if any, continues below)."""
        self.end()
        print(text, file=self.out, flush=True)

    def end(self) -> None:
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False


def _bar(job: dict[str, Any], width: int = BAR_WIDTH) -> str:
    """``[#####---------------] `` for a working job's ``done``/``total``; else nothing."""
    progress = job.get("progress") or {}
    done, total = progress.get("done"), progress.get("total")
    if job["status"] not in ("preparing", "running") or not done or not total or total <= 1:
        return ""
    filled = min(width, round(width * done / total))
    return f"[{'#' * filled}{'-' * (width - filled)}] "


def job_exit_status(job: dict[str, Any]) -> int:
    """The exit status of a final job: 0 met its targets, 3 missed, 4 failed, 5 cancelled."""
    status = job["status"]
    if status == "failed":
        return EXIT_FAILED
    if status == "cancelled":
        return EXIT_CANCELLED
    assert status == "succeeded", status
    met = (job.get("result") or {}).get("met_targets")
    return EXIT_MISSED if met is False else EXIT_OK


def report_end(job: dict[str, Any], out: TextIO | None = None) -> int:
    """Say on ``out`` (stderr) how the final ``job`` ended; return its exit status."""
    stream = sys.stderr if out is None else out
    code = job_exit_status(job)
    jid = job["id"]
    if code == EXIT_FAILED:
        print(f"error[{job['error_code']}]: job {jid} failed: {job['error_message']}", file=stream)
    elif code == EXIT_CANCELLED:
        print(f"job {jid} was cancelled", file=stream)
    else:
        result = job.get("result") or {}
        chosen = result.get("chosen") or {}
        size = chosen.get("payload_bytes")
        shown = f": {size:,} payload bytes" if isinstance(size, int) else ""
        met = "met its targets" if code == EXIT_OK else "missed its targets (exit status 3)"
        print(f"job {jid} succeeded and {met}{shown}", file=stream)
        if code == EXIT_MISSED and result.get("message"):
            print(str(result["message"]), file=stream)
    stream.flush()
    return code


def download_artifacts(client: Client, job: dict[str, Any], directory: Path) -> list[Path]:
    """Write the files of the succeeded ``job`` into ``directory``; return their paths.

    Each file is streamed to ``NAME.part``, its sha256 compared with the one
    ``GET /v1/jobs/{id}/artifacts`` lists, and only then renamed to ``NAME``.

    Raises:
        ClientError: the job has not succeeded (``job_not_succeeded``, status 2); a name
            that is no plain file name (``unsafe_artifact_name``) or a file whose sha256
            differs (``checksum_mismatch``), both status 1.
    """
    jid = job["id"]
    if job["status"] != "succeeded":
        raise ClientError(
            "job_not_succeeded",
            f"job {jid} is {job['status']}; only a succeeded job has files to download"
            + ("" if job["status"] in FINAL else f" (wait for it: `mpq jobs wait {jid}`)"),
        )
    listing = client.get(f"/v1/jobs/{jid}/artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for artifact in listing["data"]:
        name = str(artifact["name"])
        if name in ("", ".", "..") or os.sep in name or "/" in name or "\0" in name:
            raise ClientError(
                "unsafe_artifact_name",
                f"job {jid} lists an artifact named {name!r}, which is not a plain file name; "
                "nothing more was written",
                exit_status=EXIT_SERVICE,
            )
        written.append(_download_one(client, jid, name, artifact["sha256"], directory))
    return written


def _download_one(client: Client, jid: int, name: str, sha256: str, directory: Path) -> Path:
    target = directory / name
    part = directory / f"{name}.part"
    digest = hashlib.sha256()
    with part.open("wb") as out:
        client.download(f"/v1/jobs/{jid}/artifacts/{name}", out, digest.update)
    if digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise ClientError(
            "checksum_mismatch",
            f"{name} of job {jid} arrived with sha256 {digest.hexdigest()}, but the API lists "
            f"{sha256}; download it again (`mpq jobs download {jid} DIR`)",
            exit_status=EXIT_SERVICE,
        )
    part.replace(target)
    return target


def add_wait_flags(parser: argparse.ArgumentParser, *, flag: bool = True) -> None:
    """``--wait`` (unless ``flag`` is false) and ``--wait-timeout S``."""
    if flag:
        parser.add_argument("--wait", action="store_true", help="follow the job to its end")
    parser.add_argument(
        "--wait-timeout",
        type=positive_seconds,
        metavar="S",
        help="give up waiting after S seconds (exit status 1; the job goes on)",
    )


def positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value
