"""``/ui/jobs/{id}``: one job -- its state, Pareto front, plan per layer, trials and files.

The page reads what ``GET /v1/jobs/{id}``, ``/trials`` and ``/artifacts`` answer, through
the same repositories and domain functions, for the viewer's team (another team's job is
a 404 page). While the job is active its status tiles (``#job-status``) refresh from
``/ui/jobs/{id}/status``; once the job is final that fragment answers ``X-MPQ-Live:
reload`` and the page reloads with the results. The charts are drawn from the trials so
far while the job runs.

Downloads go through the API's own route function, so a file, its ``ETag`` and its
``Content-Disposition`` are the API's. Cancelling is a form (CSRF-checked first) that
calls :func:`service.domain.cancel_job` and comes back to the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from service.api.deps import BlobsDep, QueueDep, SessionDep, SettingsDep
from service.api.pages.auth import PREFIX, PageCaller, require_csrf
from service.api.pages.charts_front import front_svg
from service.api.pages.charts_plan import layers_svg
from service.api.pages.job_view import front_chart, higher_is_better, layer_bars, plan_choices
from service.api.pages.render import ENV, render
from service.api.pages.views import ACTIVE_STATES, duration_s, job_progress, targets_text
from service.api.params import JobId
from service.api.routes.jobs import download_artifact
from service.db import repos
from service.db.models import Artifact, Job, Model
from service.domain import cancel_job, job_trials
from service.queue import sender

__all__ = ["MAX_TRIAL_ROWS", "page_context", "router", "status_context"]

router = APIRouter()

MAX_TRIAL_ROWS = 500
"""Trials listed in the page's table (the chart shows them all)."""

LIVE_HEADER = "X-MPQ-Live"


def _model(session: Session, job: Job) -> Model:
    model = session.get(Model, job.model_id)
    assert model is not None  # a foreign key; models are never deleted under their jobs
    return model


def status_context(job: Job, model: Model) -> dict[str, Any]:
    """What the status tiles (``_job_status.html``) show of ``job``."""
    result = job.result or {}
    chosen = result.get("chosen") or None
    best = job.best or {}
    baseline = job.baseline or {}
    metric = chosen.get("metric") if chosen else best.get("metric")
    size = chosen.get("payload_bytes") if chosen else best.get("bytes")
    ratio = chosen.get("compression") if chosen else None
    if ratio is None and size and baseline.get("bytes"):
        ratio = baseline["bytes"] / size
    return {
        "job": job,
        "model": model,
        "progress": job_progress(job),
        "active": job.status in ACTIVE_STATES,
        "metric_name": job.config.get("metric", "metric"),
        "lower_better": not higher_is_better(str(job.config.get("metric", ""))),
        "baseline": baseline,
        "float_bytes": (model.inventory or {}).get("float_bytes"),
        "best_metric": metric,
        "best_bytes": size,
        "ratio": ratio,
        "has_chosen": chosen is not None,
        "met": result.get("met_targets"),
        "targets": targets_text(job.config),
        "by": job.created_by.name if job.created_by else "admin",
        "took": duration_s(job),
    }


def _trial_rows(records: list[dict[str, Any]], front: list[int]) -> dict[str, Any]:
    on_front = set(front)
    rows = sorted(records, key=lambda r: r["number"])
    return {
        "trials": rows[:MAX_TRIAL_ROWS],
        "trials_count": len(rows),
        "on_front": on_front,
        "max_trial_rows": MAX_TRIAL_ROWS,
    }


def page_context(
    job: Job,
    model: Model,
    *,
    records: list[dict[str, Any]],
    front: list[int],
    artifacts: Sequence[Artifact],
) -> dict[str, Any]:
    """Everything ``job.html`` shows of ``job``, from its row, model, trials and files."""
    result = job.result or {}
    chosen = result.get("chosen") or None
    choices, plan_trial = plan_choices(job)
    inventory = (model.inventory or {}).get("layers") or []
    bars = layer_bars(
        inventory,
        choices,
        sensitivity=result.get("sensitivity"),
        float_layers=(chosen or {}).get("float_layers"),
    )
    return {
        **status_context(job, model),
        "result": result,
        "chosen": chosen,
        "plan_trial": plan_trial,
        "bars": bars if choices else [],
        "front_svg": front_svg(front_chart(job, records, front)),
        "layers_svg": layers_svg(bars) if choices else None,
        "artifacts": artifacts,
        **_trial_rows(records, result.get("front", front)),
    }


@router.get("/jobs/{job_id:int}")
def job_page(
    job_id: JobId,
    request: Request,
    session: SessionDep,
    viewer: PageCaller,
    settings: SettingsDep,
) -> Response:
    """The job page (the contract's ``#job-status``, ``svg#front``, ``svg#layers``, tables)."""
    job = repos.get_job(session, team=viewer.team, job_id=job_id)
    records, front = job_trials(job, settings=settings)
    context = page_context(
        job,
        _model(session, job),
        records=records,
        front=front,
        artifacts=repos.list_artifacts(session, job=job),
    )
    return render(request, "job.html", viewer=viewer, **context)


@router.get("/jobs/{job_id:int}/status")
def job_status(job_id: JobId, session: SessionDep, viewer: PageCaller) -> Response:
    """The inner HTML of ``#job-status``; ``X-MPQ-Live``: keep while active, else reload."""
    job = repos.get_job(session, team=viewer.team, job_id=job_id)
    context = status_context(job, _model(session, job))
    html = ENV.get_template("_job_status.html").render(ui=PREFIX, **context)
    live = "keep" if job.status in ACTIVE_STATES else "reload"
    return HTMLResponse(html, headers={LIVE_HEADER: live, "Cache-Control": "no-store"})


@router.get("/jobs/{job_id:int}/artifacts/{name}")
def job_artifact(
    job_id: JobId,
    name: str,
    session: SessionDep,
    viewer: PageCaller,
    blobs: BlobsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The artifact ``name``, answered exactly as ``GET /v1/jobs/{id}/artifacts/{name}``."""
    return download_artifact(job_id, name, session, viewer.team, blobs, if_none_match)


@router.post("/jobs/{job_id:int}/cancel")
def job_cancel(
    job_id: JobId,
    session: SessionDep,
    viewer: PageCaller,
    queue: QueueDep,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Cancel the job (as ``POST /v1/jobs/{id}/cancel``: a finished one is a 409 page)."""
    require_csrf(viewer, csrf)
    cancel_job(session, team=viewer.team, job_id=job_id, send=sender(queue))
    return RedirectResponse(f"{PREFIX}/jobs/{job_id}", status_code=303)
