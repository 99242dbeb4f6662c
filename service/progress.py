"""A job's phase: the progress document its tasks store on its row, and the time-left estimate.

Once a worker takes a job, the job row's ``progress`` column holds one document, rewritten
by whichever task works on the job (:func:`progress_doc` builds it)::

    {"phase": "preparing", "step": "sensitivity", "done": 12, "total": 50,
     "eta_s": null, "updated_at": "2026-12-03T16:20:01.52+00:00"}

``phase`` is one of :data:`PHASES`: ``preparing`` (the job's status is ``preparing``; its
``step`` is one of :data:`STEPS`), ``searching`` (trials run: ``done`` of ``total`` is
the trials finished of the budget, ``eta_s`` the estimate of :func:`eta_seconds`) and
``finalizing`` (the budget is spent; finalists and artifacts are being made). The
``mpq search`` command shows the same phases on its progress line (:func:`describe`).

Writers report at most about once a second (:class:`Throttle`): a progress report is a
database write, and a cached sensitivity runs its steps far faster than anyone reads them.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "PHASES",
    "REPORT_INTERVAL_S",
    "STEPS",
    "Throttle",
    "describe",
    "eta_seconds",
    "progress_doc",
]

PHASES = ("preparing", "searching", "finalizing")
"""What a job a worker took is doing, in order."""

STEPS = ("loading", "calibrating", "sensitivity", "seeding")
"""The steps of ``preparing``, in order: reading the model and data; the float model's
pass over the calibration and evaluation data (its reference outputs and baseline
metric; the activation ranges are collected by the first sensitivity measurement, so
``calibrating`` stays shown until it ends); each (layer, format) quantized alone and its
damage measured (``done``/``total`` pairs); the seeding plans solved and the study created.
Steps without a count are reported once, as ``0`` of ``1``, when they begin."""

REPORT_INTERVAL_S = 1.0
"""The least time between two progress reports of one task, but for a new step."""


def progress_doc(
    phase: str,
    *,
    step: str | None = None,
    done: int | None = None,
    total: int | None = None,
    eta_s: float | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The progress document of a job in ``phase`` (see the module docstring).

    Args:
        phase: one of :data:`PHASES`.
        step: while ``preparing``, one of :data:`STEPS`.
        done: units of the step (or trials) finished.
        total: units of the step (or trials) in all.
        eta_s: estimated seconds left at ``updated_at`` (:func:`eta_seconds`).
        now: the time of the report (default: now, UTC).
    """
    assert phase in PHASES and (step is None or step in STEPS), (phase, step)
    return {
        "phase": phase,
        "step": step,
        "done": done,
        "total": total,
        "eta_s": None if eta_s is None else round(eta_s, 1),
        "updated_at": (now or datetime.now(UTC)).isoformat(),
    }


def eta_seconds(
    *,
    mean_s: float | None,
    left: int,
    parallelism: int,
    deadline_left_s: float | None = None,
) -> float | None:
    """Estimated seconds until the search ends (the finalize not included).

    ``eta = min(ceil(left / parallelism) * mean_s, deadline_left_s)``, at least 0:
    the ``left`` trials run ``parallelism`` at a time, each wave taking the mean seconds
    of a finished trial, unless the job's wall-clock budget (``timeout_s``) ends the
    search first. ``mean_s`` is measured as wall time per finished trial of a runner
    (its seconds in the search divided by the trials it finished), so the storage round
    trips between evaluations are counted too.

    Args:
        mean_s: mean wall seconds per finished trial; ``None`` before the first one
            finished, when nothing is known (the answer is then ``None``).
        left: trials left of the budget (``trials_total - trials_done``).
        parallelism: trial runners working at once (>= 1).
        deadline_left_s: seconds until the job's timeout, ``None`` without a timeout.
    """
    if mean_s is None:
        return None
    eta = math.ceil(max(left, 0) / max(parallelism, 1)) * mean_s
    if deadline_left_s is not None:
        eta = min(eta, deadline_left_s)
    return max(eta, 0.0)


def describe(doc: dict[str, Any]) -> str:
    """One line for people: ``preparing: sensitivity 12/50``, ``searching: 8/40, ~1m05s left``."""
    phase, step = doc["phase"], doc.get("step")
    done, total = doc.get("done"), doc.get("total")
    text = phase if step is None else f"{phase}: {step}"
    if done is not None and total is not None and (phase == "searching" or total > 1):
        text += f"{':' if step is None else ''} {done}/{total}"
    eta = doc.get("eta_s")
    if eta is not None:
        minutes, seconds = divmod(round(eta), 60)
        text += f", ~{minutes}m{seconds:02d}s left" if minutes else f", ~{seconds}s left"
    return text


class Throttle:
    """Lets a report through when its step changed or ``interval_s`` passed since the last.

    ``Throttle()(step)`` is True for the first report, for the first of each new step,
    and afterwards at most once per ``interval_s`` seconds (``time.monotonic``).
    """

    def __init__(self, interval_s: float = REPORT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._step: str | None = None
        self._last = -math.inf

    def __call__(self, step: str) -> bool:
        now = time.monotonic()
        if step == self._step and now - self._last < self.interval_s:
            return False
        self._step, self._last = step, now
        return True
