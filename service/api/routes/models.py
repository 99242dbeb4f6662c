"""``/v1/models``: upload a model (imported in isolation into IR), list and read them."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from starlette.concurrency import run_in_threadpool

from service.api.deps import (
    BlobsDep,
    CurrentKey,
    CurrentTeam,
    LimitsDep,
    SessionDep,
    SettingsDep,
    TrustUploadsDep,
)
from service.api.multipart import openapi_form, receive_upload
from service.api.params import Limit, ModelId, Skip
from service.api.responses import errors
from service.db import repos
from service.db.repos import check_label
from service.domain import add_model
from service.schemas import ModelDetail, ModelPublic, ModelsPublic

__all__ = ["router"]

router = APIRouter(
    prefix="/models",
    tags=["models"],
    responses=errors(401, 422, 429, 503),
)


MULTIPART = openapi_form(name={"type": "string", "description": "versions count up per name"})


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelDetail,
    openapi_extra=MULTIPART,
    responses=errors(408, 413, 503),
)
async def upload_model(
    request: Request,
    session: SessionDep,
    team: CurrentTeam,
    key: CurrentKey,
    settings: SettingsDep,
    blobs: BlobsDep,
    trust: TrustUploadsDep,
    limits: LimitsDep,
) -> ModelDetail:
    """Upload a `.pt2` (torch.export) or `.onnx` model as the next version of `name`.

    The file is streamed to disk (limit `MPQ_MAX_UPLOAD_BYTES`), imported into MPQ's IR
    by the isolated importer, and stored by its sha256. Pickles, TorchScript and other
    unacceptable files answer 422 with a specific code; a `name` that is empty, blank
    or has control characters answers 422 `invalid_name` before any import. When every
    upload or import slot is taken the answer is 503 `busy` with `Retry-After`; a body
    that stalls for `MPQ_UPLOAD_READ_TIMEOUT_S`, or crawls under `MPQ_UPLOAD_MIN_RATE_BPS`,
    is answered 408 `upload_timeout`.
    """
    async with limits.uploads.take():
        upload = await receive_upload(
            request,
            store=blobs,
            max_bytes=settings.max_upload_bytes,
            read_timeout_s=settings.upload_read_timeout_s,
            min_rate_bps=settings.upload_min_rate_bps,
        )
        try:
            name = upload.text("name")
            check_label(name, what="model")
            async with limits.imports.take(wait_s=settings.import_wait_s):
                # the session holds no connection here: add_model takes one only to insert
                row = await run_in_threadpool(
                    lambda: add_model(
                        session,
                        store=blobs,
                        team=team,
                        name=name,
                        path=upload.path,
                        sha256=upload.sha256,
                        trust=trust,
                        created_by=key,
                        filename=upload.filename,
                    )
                )
        finally:
            upload.discard()
    return ModelDetail.model_validate(row)


@router.get("", response_model=ModelsPublic)
def list_models(
    session: SessionDep,
    team: CurrentTeam,
    skip: Skip = 0,
    limit: Limit = 20,
) -> ModelsPublic:
    """The team's models, newest first (`skip`/`limit` pagination; `count` is the total)."""
    rows = repos.list_models(session, team=team, skip=skip, limit=limit)
    return ModelsPublic(
        data=[ModelPublic.model_validate(r) for r in rows],
        count=repos.count_models(session, team=team),
    )


@router.get("/{model_id}", response_model=ModelDetail, responses=errors(404))
def get_model(model_id: ModelId, session: SessionDep, team: CurrentTeam) -> ModelDetail:
    """One of the team's models, with its layer inventory (another team's id: 404)."""
    return ModelDetail.model_validate(repos.get_model(session, team=team, model_id=model_id))
