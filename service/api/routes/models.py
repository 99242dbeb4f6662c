"""``/v1/models``: upload a model (imported in isolation into IR), list and read them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from starlette.concurrency import run_in_threadpool

from service.api.deps import (
    BlobsDep,
    CurrentKey,
    CurrentTeam,
    SessionDep,
    SettingsDep,
    TrustUploadsDep,
)
from service.api.multipart import openapi_form, receive_upload
from service.api.responses import errors
from service.db import repos
from service.domain import add_model
from service.schemas import ModelDetail, ModelPublic, ModelsPublic

__all__ = ["router"]

router = APIRouter(
    prefix="/models",
    tags=["models"],
    responses=errors(401, 422),
)


MULTIPART = openapi_form(name={"type": "string", "description": "versions count up per name"})


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelDetail,
    openapi_extra=MULTIPART,
    responses=errors(413, 503),
)
async def upload_model(
    request: Request,
    session: SessionDep,
    team: CurrentTeam,
    key: CurrentKey,
    settings: SettingsDep,
    blobs: BlobsDep,
    trust: TrustUploadsDep,
) -> ModelDetail:
    """Upload a `.pt2` (torch.export) or `.onnx` model as the next version of `name`.

    The file is streamed to disk (limit `MPQ_MAX_UPLOAD_BYTES`), imported into MPQ's IR
    by the isolated importer, and stored by its sha256. Pickles, TorchScript and other
    unacceptable files answer 422 with a specific code.
    """
    upload = await receive_upload(request, store=blobs, max_bytes=settings.max_upload_bytes)
    try:
        name = upload.text("name")
    except BaseException:
        upload.discard()
        raise
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
        )
    )
    return ModelDetail.model_validate(row)


@router.get("", response_model=ModelsPublic)
def list_models(
    session: SessionDep,
    team: CurrentTeam,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ModelsPublic:
    """The team's models, newest first (`skip`/`limit` pagination; `count` is the total)."""
    rows = repos.list_models(session, team=team, skip=skip, limit=limit)
    return ModelsPublic(
        data=[ModelPublic.model_validate(r) for r in rows],
        count=repos.count_models(session, team=team),
    )


@router.get("/{model_id}", response_model=ModelDetail, responses=errors(404))
def get_model(model_id: int, session: SessionDep, team: CurrentTeam) -> ModelDetail:
    """One of the team's models, with its layer inventory (another team's id: 404)."""
    return ModelDetail.model_validate(repos.get_model(session, team=team, model_id=model_id))
