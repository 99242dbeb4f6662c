"""``/ui/jobs``: the team's jobs, filtered and paginated, with rows that refresh themselves.

The page's table body names a fragment URL (``/ui/jobs/rows`` with the page's own
query) that the page's script fetches every few seconds while any job on screen is
active; the fragment is the same template the page renders, so a row reads the same
before and after a refresh. A fragment with no active job tells the script to stop
(``X-MPQ-Live: stop``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from service.api.deps import SessionDep
from service.api.pages.auth import PREFIX, PageCaller, Viewer
from service.api.pages.render import ENV, render
from service.api.pages.views import ACTIVE_STATES, duration_s, job_progress, targets_text
from service.db import repos
from service.db.models import JobStatus
from service.db.repos import JobFilter, JobSummary

__all__ = ["PAGE_SIZE", "router"]

router = APIRouter()

PAGE_SIZE = 50
"""Jobs per page."""

LIVE_HEADER = "X-MPQ-Live"


@dataclass(frozen=True)
class JobsQuery:
    """The jobs page's query: its filters and where the page starts."""

    status: JobStatus | None
    model: str | None
    key_id: int | None
    skip: int

    @property
    def filter(self) -> JobFilter:
        return JobFilter(status=self.status, model=self.model, key_id=self.key_id)

    def params(self, *, skip: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.status is not None:
            out["status"] = self.status.value
        if self.model is not None:
            out["model"] = self.model
        if self.key_id is not None:
            out["key"] = self.key_id
        skip = self.skip if skip is None else skip
        if skip:
            out["skip"] = skip
        return out

    def url(self, path: str, *, skip: int | None = None) -> str:
        query = urlencode(self.params(skip=skip))
        return f"{PREFIX}{path}" + (f"?{query}" if query else "")


def _jobs_query(
    status: Annotated[str, Query(max_length=16)] = "",
    model: Annotated[str, Query(max_length=255)] = "",
    key: Annotated[str, Query(max_length=20)] = "",
    skip: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> JobsQuery:
    # Unknown filter values read as "no such jobs" rather than as an error page: a
    # bookmarked filter on a removed key still opens.
    state = next((s for s in JobStatus if s.value == status), None)
    key_id = int(key) if key.isascii() and key.isdigit() else None
    return JobsQuery(status=state, model=model or None, key_id=key_id, skip=skip)


def _row_context(rows: list[JobSummary]) -> dict[str, Any]:
    return {
        "rows": rows,
        "progress": job_progress,
        "duration": duration_s,
        "targets": targets_text,
    }


def _live(rows: list[JobSummary]) -> bool:
    return any(s.job.status in ACTIVE_STATES for s in rows)


def _page_rows(session: SessionDep, viewer: Viewer, q: JobsQuery) -> list[JobSummary]:
    return repos.list_job_summaries(
        session, team=viewer.team, where=q.filter, skip=q.skip, limit=PAGE_SIZE
    )


@router.get("/jobs")
def jobs_page(
    request: Request,
    session: SessionDep,
    viewer: PageCaller,
    status: Annotated[str, Query(max_length=16)] = "",
    model: Annotated[str, Query(max_length=255)] = "",
    key: Annotated[str, Query(max_length=20)] = "",
    skip: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> Response:
    """The team's jobs, newest first, :data:`PAGE_SIZE` a page."""
    q = _jobs_query(status, model, key, skip)
    rows = _page_rows(session, viewer, q)
    count = repos.count_job_summaries(session, team=viewer.team, where=q.filter)
    filtered = q.status is not None or q.model is not None or q.key_id is not None
    return render(
        request,
        "jobs.html",
        viewer=viewer,
        count=count,
        skip=q.skip,
        filters=q,
        filtered=filtered,
        statuses=[s.value for s in JobStatus],
        model_names=repos.list_model_names(session, team=viewer.team),
        keys=repos.list_api_keys(session, team=viewer.team),
        live=q.url("/jobs/rows") if _live(rows) or q.skip == 0 else None,
        prev_url=q.url("/jobs", skip=max(q.skip - PAGE_SIZE, 0)) if q.skip else None,
        next_url=q.url("/jobs", skip=q.skip + PAGE_SIZE) if q.skip + PAGE_SIZE < count else None,
        **_row_context(rows),
    )


@router.get("/jobs/rows")
def jobs_rows(
    session: SessionDep,
    viewer: PageCaller,
    status: Annotated[str, Query(max_length=16)] = "",
    model: Annotated[str, Query(max_length=255)] = "",
    key: Annotated[str, Query(max_length=20)] = "",
    skip: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> Response:
    """The jobs table's rows alone (the page's live refresh).

    The first page keeps refreshing (a new job appears at its top); a later page stops
    once none of its jobs is active.
    """
    q = _jobs_query(status, model, key, skip)
    rows = _page_rows(session, viewer, q)
    html = ENV.get_template("_job_rows.html").render(
        ui=PREFIX, filtered=q.filter != JobFilter(), **_row_context(rows)
    )
    keep = _live(rows) or q.skip == 0
    return HTMLResponse(html, headers={LIVE_HEADER: "keep" if keep else "stop"})
