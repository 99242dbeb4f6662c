"""``/v1/jobs``: submit a search job, follow it, cancel it, download what it produced."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response, status
from fastapi.responses import FileResponse

from service.api.deps import (
    BlobsDep,
    CurrentKey,
    CurrentTeam,
    QueueDep,
    SessionDep,
    SettingsDep,
)
from service.api.params import JobId, Limit, Skip
from service.api.responses import errors
from service.db import repos
from service.db.models import Job, JobStatus
from service.domain import cancel_job as cancel
from service.domain import job_trials, resolve_model
from service.domain import submit_job as submit
from service.errors import NotFoundError
from service.queue import sender
from service.schemas import (
    ArtifactPublic,
    ArtifactsPublic,
    JobCreate,
    JobDetail,
    JobPublic,
    JobsPublic,
    TrialsPublic,
)

__all__ = ["router"]

router = APIRouter(
    prefix="/jobs",
    tags=["jobs"],
    responses=errors(401, 422, 429, 503),
)

MEDIA_TYPES = {".json": "application/json", ".png": "image/png"}


def _detail(job: Job) -> JobDetail:
    detail = JobDetail.model_validate(job)
    detail.chosen = None if job.result is None else job.result.get("chosen")
    return detail


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobDetail,
    responses=errors(404, 413, 503),
)
def submit_job(
    request: JobCreate,
    session: SessionDep,
    team: CurrentTeam,
    key: CurrentKey,
    settings: SettingsDep,
    queue: QueueDep,
    blobs: BlobsDep,
) -> JobDetail:
    """Queue a search of `model_id` on `dataset_id`; workers pick it up.

    Instead of `model_id`, `model: {"name", "alias"}` names the model by an alias of its
    name (no alias: the latest version), resolved before the 202 (unknown: 404).

    The rest of the body is a job spec (`search.JobSpec`), stored as the job's `config`.
    Answers 202 with the queued job; follow it with `GET /v1/jobs/{id}`. Invalid
    targets, formats or metrics answer 422 (`invalid_request`, `invalid_plan`); a metric
    that needs labels on a dataset without them, 422 (`metric_not_applicable`); a dataset
    uploaded for a model with other inputs, 422 (`dataset_model_mismatch`); a team at its
    quota of active jobs, 429 (`quota_exceeded`). Everything is checked before the 202.
    """
    model_id = request.model_id
    if request.model is not None:
        ref = request.model
        model_id = resolve_model(session, team=team, name=ref.name, alias=ref.alias).id
    assert model_id is not None  # JobCreate holds exactly one of the two
    job = submit(
        session,
        team=team,
        model_id=model_id,
        dataset_id=request.dataset_id,
        spec=request.spec(),
        settings=settings,
        queue=queue,
        created_by=key,
        store=blobs,
    )
    return _detail(job)


@router.get("", response_model=JobsPublic)
def list_jobs(
    session: SessionDep,
    team: CurrentTeam,
    status: JobStatus | None = None,
    skip: Skip = 0,
    limit: Limit = 20,
) -> JobsPublic:
    """The team's jobs, newest first, optionally in one `status` (`count`: all that match)."""
    rows = repos.list_jobs(session, team=team, status=status, skip=skip, limit=limit)
    return JobsPublic(
        data=[JobPublic.model_validate(r) for r in rows],
        count=repos.count_jobs(session, team=team, status=status),
    )


@router.get("/{job_id}", response_model=JobDetail, responses=errors(404))
def get_job(job_id: JobId, session: SessionDep, team: CurrentTeam) -> Response:
    """One job: state, phase, progress, baseline, best plan so far, result, chosen plan, error.

    Once a worker takes a job it is `preparing` (`progress.step`: loading, calibrating,
    sensitivity `done`/`total`, seeding), then `running` (phase `searching`, trials done of
    the budget, `eta_s` once a trial finished; then `finalizing`).
    """
    # Encoded here, once, by pydantic: a returned model would be validated again in
    # another threadpool hop first (the status route is the one clients poll).
    detail = _detail(repos.get_job(session, team=team, job_id=job_id))
    return Response(detail.model_dump_json(), media_type="application/json")


@router.get("/{job_id}/trials", response_model=TrialsPublic, responses=errors(404))
def get_trials(
    job_id: JobId, session: SessionDep, team: CurrentTeam, settings: SettingsDep
) -> TrialsPublic:
    """The job's trials so far (plan, metric, bytes, feasibility) and its Pareto front."""
    job = repos.get_job(session, team=team, job_id=job_id)
    records, pareto = job_trials(job, settings=settings)
    return TrialsPublic(data=records, count=len(records), front=pareto)


@router.post("/{job_id}/cancel", response_model=JobDetail, responses=errors(404, 409))
def cancel_job(job_id: JobId, session: SessionDep, team: CurrentTeam, queue: QueueDep) -> JobDetail:
    """Cancel a queued, preparing or running job.

    A preparing job stops at its next preparation step, running trials after the current one.
    The team's webhooks subscribed to `job.cancelled` are sent it now.

    Cancelling a cancelled job changes nothing; a finished one answers 409 `conflict`.
    """
    return _detail(cancel(session, team=team, job_id=job_id, send=sender(queue)))


@router.get("/{job_id}/artifacts", response_model=ArtifactsPublic, responses=errors(404))
def list_artifacts(job_id: JobId, session: SessionDep, team: CurrentTeam) -> ArtifactsPublic:
    """The files a finished job produced (`model.mpq`, `result.json`, plots)."""
    job = repos.get_job(session, team=team, job_id=job_id)
    rows = repos.list_artifacts(session, job=job)
    return ArtifactsPublic(data=[ArtifactPublic.model_validate(r) for r in rows], count=len(rows))


# Artifacts never change (an ETag is the file's sha256): a client may keep a copy and
# revalidate it with If-None-Match; no shared cache may keep one (team data).
ARTIFACT_CACHE_CONTROL = "private, no-cache"


@router.get(
    "/{job_id}/artifacts/{name}",
    response_class=FileResponse,
    responses={
        200: {"content": {t: {} for t in ("application/octet-stream", *MEDIA_TYPES.values())}},
        304: {"description": "`If-None-Match` names the artifact's ETag (or is `*`)"},
        **errors(404),
    },
)
def download_artifact(
    job_id: JobId,
    name: str,
    session: SessionDep,
    team: CurrentTeam,
    blobs: BlobsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Download one artifact; `ETag` is its quoted sha256, `Content-Length` its size.

    With `If-None-Match` naming that ETag (or `*`, or a list holding it), the answer is
    304 with no body: the copy the client has is current.
    """
    job = repos.get_job(session, team=team, job_id=job_id)
    row = repos.get_artifact(session, job=job, name=name)
    path = blobs.path(row.blob_path)
    if not path.is_file():
        raise NotFoundError(f"artifact {name!r} of job {job_id} is missing from the blob store")
    headers = {"ETag": f'"{row.sha256}"', "Cache-Control": ARTIFACT_CACHE_CONTROL}
    if if_none_match is not None and etag_matches(if_none_match, row.sha256):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    suffix = path.suffix.lower()
    return FileResponse(
        path,
        media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"),
        filename=name,
        headers=headers,
    )


def etag_matches(if_none_match: str, opaque: str) -> bool:
    """Whether an ``If-None-Match`` value names the entity tag ``"<opaque>"``.

    RFC 9110 13.1.2: ``*`` matches any current representation; otherwise the value is
    a comma-separated list of entity tags, compared weakly (``W/"x"`` matches ``"x"``).
    """
    value = if_none_match.strip()
    if value == "*":
        return True
    tags = (t.strip() for t in value.split(","))
    return any(t.removeprefix("W/") == f'"{opaque}"' for t in tags)
