"""What the pages say about a job in words: its targets, its state, its progress.

Pure functions of a job row's documents (``config``, ``progress``, ``best``), shared by
the jobs list and the job page so that one job reads the same on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.api.pages.render import fmt_bytes, fmt_metric
from service.db.models import Job, JobStatus
from service.progress import describe

__all__ = ["ACTIVE_STATES", "Progress", "duration_s", "job_progress", "targets_text"]

ACTIVE_STATES = frozenset({JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.RUNNING})
"""States in which a job's row still changes (pages showing one keep refreshing)."""

_TARGET_WORDS = {
    "max_drop": ("metric drop at most", fmt_metric),
    "max_drop_rel": ("relative drop at most", lambda v: f"{100 * v:.3g}%"),
    "min_metric": ("metric at least", fmt_metric),
    "max_metric": ("metric at most", fmt_metric),
    "max_bytes": ("size at most", lambda v: v if isinstance(v, str) else fmt_bytes(v)),
    "min_ratio": ("compression at least", lambda v: f"{v:g}x"),
}


def targets_text(config: dict[str, Any]) -> str:
    """A job's targets in words: ``"metric drop at most 0.01; size at most 8 MiB"``."""
    targets = config.get("targets") or {}
    parts = [
        f"{words} {fmt(targets[name])}"
        for name, (words, fmt) in _TARGET_WORDS.items()
        if targets.get(name) is not None
    ]
    return "; ".join(parts) or "none (the Pareto front only)"


@dataclass(frozen=True)
class Progress:
    """A job's progress bar: ``value`` of ``max`` (None: no bar) and its caption."""

    value: int | None
    max: int | None
    caption: str


def job_progress(job: Job) -> Progress:
    """What the progress bar of ``job`` shows.

    Queued: no bar. Preparing: the step's units done (sensitivity 12/50). Running and
    after: trials done of the budget (the finished count, even once the job ended).
    """
    if job.status == JobStatus.QUEUED:
        return Progress(None, None, "waiting for a worker")
    doc = job.progress
    if job.status == JobStatus.PREPARING and doc is not None:
        done, total = doc.get("done"), doc.get("total")
        bar = (done, total) if done is not None and total else (None, None)
        return Progress(bar[0], bar[1], describe(doc))
    caption = f"{job.trials_done}/{job.trials_total} trials"
    if job.status == JobStatus.RUNNING and doc is not None:
        caption = describe(doc)
    return Progress(min(job.trials_done, job.trials_total), job.trials_total, caption)


def duration_s(job: Job, *, now: datetime | None = None) -> float | None:
    """Seconds from the job's creation to its end (or to ``now`` while it is active)."""
    end = job.finished_at
    if end is None:
        if job.status not in ACTIVE_STATES:
            return None
        end = now or datetime.now(UTC)
    start = job.created_at
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return max((end - start).total_seconds(), 0.0)
