"""``/ui/jobs/new``: submit a job from a form, and upload the model and data it needs.

The form is read into the body ``POST /v1/jobs`` would get (:mod:`service.api.pages.
job_form`), validated by the same :class:`~service.schemas.JobCreate` and submitted by
the same :func:`service.domain.submit_job`: a form is refused exactly when the API
refuses the same values, with the same code and message, shown above the form with the
user's values kept. The two upload forms go through the API's upload pipeline
(:func:`service.api.uploads.import_upload`); their CSRF token, a field of the multipart
body, is checked once the body is received and before anything is imported.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from engine.data import METRICS
from engine.errors import MPQError
from search import SAMPLERS, JobSpec
from search._sensitivity import METHODS as SENSITIVITY_METHODS
from service.api.deps import (
    BlobsDep,
    LimitsDep,
    QueueDep,
    SessionDep,
    SettingsDep,
    TrustUploadsDep,
)
from service.api.errors import http_status, validation_message
from service.api.multipart import Upload
from service.api.pages.auth import PREFIX, PageCaller, Viewer, require_csrf
from service.api.pages.job_form import DEFAULTS, TARGETS, form_values, request_body
from service.api.pages.render import render
from service.api.uploads import (
    DATASET_FORM,
    MODEL_FORM,
    dataset_fields,
    import_upload,
    model_fields,
)
from service.db import repos
from service.domain import add_dataset, add_model, submit_job
from service.errors import BusyError, CsrfError, InvalidRequestError
from service.schemas import JobCreate

__all__ = ["JobForm", "router"]

router = APIRouter()

MAX_CHOICES = 500
"""Models and datasets the selects offer at most (newest first)."""

_FIELD = Field(default="", max_length=4096)


class JobForm(BaseModel):
    """The New job form's fields, as text (empty: the spec's default)."""

    model_config = ConfigDict(extra="ignore")

    csrf: str = Field(default="", max_length=128)
    model_id: str = _FIELD
    dataset_id: str = _FIELD
    metric: str = _FIELD
    target: str = _FIELD
    target_value: str = _FIELD
    size_target: str = _FIELD
    size_target_value: str = _FIELD
    trials: str = _FIELD
    space: str = _FIELD
    seed: str = _FIELD
    parallelism: str = _FIELD
    sampler: str = _FIELD
    timeout_s: str = _FIELD
    sensitivity: str = _FIELD
    holdout: str = _FIELD
    rounding: str = _FIELD
    activation: str = _FIELD
    pins: str = _FIELD

    def values(self) -> dict[str, str]:
        """The fields the form shows (everything but the token)."""
        return {name: getattr(self, name) for name in DEFAULTS}


def _page(
    request: Request,
    session: Session,
    viewer: Viewer,
    *,
    values: dict[str, str],
    error: MPQError | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The New job page with ``values`` in its form and, when refused, ``error`` above it."""
    models = repos.list_models(session, team=viewer.team, limit=MAX_CHOICES)
    datasets = repos.list_datasets(session, team=viewer.team, limit=MAX_CHOICES)
    names = {m.id: f"{m.name} v{m.version}" for m in models}
    response = render(
        request,
        "new_job.html",
        viewer=viewer,
        status=200 if error is None else http_status(type(error)),
        values=values,
        error=None if error is None else {"code": error.code, "message": error.message},
        models=models,
        datasets=datasets,
        model_names=names,
        metrics=list(METRICS),
        targets=TARGETS,
        samplers=SAMPLERS,
        sensitivity_methods=SENSITIVITY_METHODS,
    )
    response.headers.update(headers or {})
    return response


@router.get("/jobs/new")
def new_job_page(
    request: Request,
    session: SessionDep,
    viewer: PageCaller,
    model_id: Annotated[str, Query(max_length=20)] = "",
    dataset_id: Annotated[str, Query(max_length=20)] = "",
    from_: Annotated[str, Query(alias="from", max_length=20)] = "",
) -> Response:
    """The form, blank, preselecting ``model_id``/``dataset_id``, or filled from job ``from``.

    Another team's job as ``from`` is a 404 page.
    """
    values = dict(DEFAULTS)
    if from_:
        job = repos.get_job(session, team=viewer.team, job_id=_id(from_, "from"))
        spec = JobSpec.from_stored(job.config)
        values = form_values(spec, model_id=job.model_id, dataset_id=job.dataset_id)
    if model_id:
        values["model_id"] = str(_id(model_id, "model_id"))
    if dataset_id:
        values["dataset_id"] = str(_id(dataset_id, "dataset_id"))
    return _page(request, session, viewer, values=values)


def _id(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= repos.MAX_ID:
        raise InvalidRequestError(f"{name} is {text[:20]!r}; give a job, model or dataset id")
    return int(text)


def _job_create(body: dict[str, Any]) -> JobCreate:
    """``body`` validated as the API validates it (its ``invalid_request`` message)."""
    try:
        return JobCreate.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequestError(validation_message(exc.errors())) from None


@router.post("/jobs/new")
def submit_job_form(
    request: Request,
    session: SessionDep,
    viewer: PageCaller,
    settings: SettingsDep,
    queue: QueueDep,
    blobs: BlobsDep,
    form: Annotated[JobForm, Form()],
) -> Response:
    """Submit the form as ``POST /v1/jobs`` would; 303 to the new job's page, or the form
    again with the API's error."""
    require_csrf(viewer, form.csrf)
    values = form.values()
    try:
        request_job = _job_create(request_body(values))
        assert request_job.model_id is not None  # the form names models by id only
        job = submit_job(
            session,
            team=viewer.team,
            model_id=request_job.model_id,
            dataset_id=request_job.dataset_id,
            spec=request_job.spec(),
            settings=settings,
            queue=queue,
            created_by=viewer.key,
            store=blobs,
        )
    except MPQError as exc:
        session.rollback()
        return _page(request, session, viewer, values=values, error=exc)
    return RedirectResponse(f"{PREFIX}/jobs/{job.id}", status_code=303)


async def _refused(request: Request, session: Session, viewer: Viewer, exc: MPQError) -> Response:
    """The New job page showing an upload's refusal (``Retry-After`` kept for ``busy``)."""
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, BusyError) else None
    values = dict(DEFAULTS)
    return await run_in_threadpool(
        lambda: _page(request, session, viewer, values=values, error=exc, headers=headers)
    )


@router.post("/models/upload", openapi_extra=MODEL_FORM)
async def upload_model_form(
    request: Request,
    session: SessionDep,
    viewer: PageCaller,
    settings: SettingsDep,
    blobs: BlobsDep,
    trust: TrustUploadsDep,
    limits: LimitsDep,
) -> Response:
    """Upload a model as ``POST /v1/models`` does; 303 to the New job page with it chosen."""

    def check(upload: Upload) -> str:
        require_csrf(viewer, upload.fields.get("csrf"))
        return model_fields(upload)

    try:
        row = await import_upload(
            request,
            settings=settings,
            blobs=blobs,
            limits=limits,
            check=check,
            load=lambda upload, name: add_model(
                session,
                store=blobs,
                team=viewer.team,
                name=name,
                path=upload.path,
                sha256=upload.sha256,
                trust=trust,
                created_by=viewer.key,
                filename=upload.filename,
            ),
        )
    except MPQError as exc:
        if isinstance(exc, CsrfError):
            raise
        return await _refused(request, session, viewer, exc)
    return RedirectResponse(f"{PREFIX}/jobs/new?model_id={row.id}", status_code=303)


@router.post("/datasets/upload", openapi_extra=DATASET_FORM)
async def upload_dataset_form(
    request: Request,
    session: SessionDep,
    viewer: PageCaller,
    settings: SettingsDep,
    blobs: BlobsDep,
    limits: LimitsDep,
) -> Response:
    """Upload a dataset as ``POST /v1/datasets`` does; 303 to the New job page with it chosen."""

    def check(upload: Upload) -> tuple[str, int]:
        require_csrf(viewer, upload.fields.get("csrf"))
        return dataset_fields(upload)

    try:
        row = await import_upload(
            request,
            settings=settings,
            blobs=blobs,
            limits=limits,
            check=check,
            load=lambda upload, fields: add_dataset(
                session,
                store=blobs,
                team=viewer.team,
                name=fields[0],
                model_id=fields[1],
                path=upload.path,
                sha256=upload.sha256,
                created_by=viewer.key,
                filename=upload.filename or "upload",
                max_bytes=settings.max_dataset_bytes,
            ),
        )
    except MPQError as exc:
        if isinstance(exc, CsrfError):
            raise
        return await _refused(request, session, viewer, exc)
    target = f"{PREFIX}/jobs/new?model_id={row.model_id}&dataset_id={row.id}"
    return RedirectResponse(target, status_code=303)
