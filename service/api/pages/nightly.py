"""``/ui/schedules``: the team's schedules with their latest runs, and its webhooks.

What a team watching its nightly compression wants at a glance: each schedule's cron
and time zone, the model it names (name and alias), its next due time, and its latest
runs -- the job each one submitted with its status and whether it regressed against the
run before, or the error that kept it from submitting; then each webhook with its events
and its latest delivery. Read-only: schedules and webhooks are made and changed over the
API (``/v1/schedules``, ``/v1/webhooks``), which the page links to in its hints. The
figures are the API's own: the next due time is computed as ``GET /v1/schedules``
computes it, the runs are ``GET /v1/schedules/{id}/runs``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from service.api.deps import SessionDep
from service.api.pages.auth import PageCaller
from service.api.pages.render import render
from service.api.routes.schedules import public
from service.db import repos
from service.db.models import Job, Schedule, ScheduleRun, Webhook, WebhookDelivery

__all__ = ["router"]

router = APIRouter()

RUNS_SHOWN = 5
"""Latest runs shown per schedule (the API pages through all of them)."""
MAX_ROWS = 100
"""Schedules and webhooks read at most (newest first)."""


@dataclass(frozen=True)
class Run:
    """One due time of a schedule, with its job when it submitted one."""

    row: ScheduleRun
    job: Job | None

    @property
    def regression(self) -> dict[str, Any] | None:
        """The job's comparison with the run before (``None``: not compared)."""
        doc = self.job.regression if self.job is not None else None
        return doc if isinstance(doc, dict) else None


@dataclass(frozen=True)
class ScheduleView:
    """A schedule, its next due time (``None``: disabled) and its latest runs."""

    schedule: Schedule
    next_run_at: datetime | None
    runs: list[Run]


@dataclass(frozen=True)
class WebhookView:
    """A webhook and its latest delivery (``None``: none yet)."""

    webhook: Webhook
    last: WebhookDelivery | None


def _schedule_views(session: Session, schedules: list[Schedule]) -> list[ScheduleView]:
    runs = repos.latest_schedule_runs(session, schedules=schedules, per=RUNS_SHOWN)
    return [
        ScheduleView(s, public(s).next_run_at, [Run(r, job) for r, job in runs[s.id]])
        for s in schedules
    ]


def _webhook_views(session: Session, webhooks: list[Webhook]) -> list[WebhookView]:
    last = repos.latest_deliveries(session, webhooks=webhooks)
    return [WebhookView(w, last[w.id]) for w in webhooks]


@router.get("/schedules")
def schedules_page(request: Request, session: SessionDep, viewer: PageCaller) -> Response:
    """The team's schedules (newest first) with their latest runs, and its webhooks."""
    schedules = repos.list_schedules(session, team=viewer.team, limit=MAX_ROWS)
    webhooks = repos.list_webhooks(session, team=viewer.team, limit=MAX_ROWS)
    return render(
        request,
        "schedules.html",
        viewer=viewer,
        schedules=_schedule_views(session, schedules),
        webhooks=_webhook_views(session, webhooks),
        runs_shown=RUNS_SHOWN,
        truncated=len(schedules) >= MAX_ROWS or len(webhooks) >= MAX_ROWS,
    )
