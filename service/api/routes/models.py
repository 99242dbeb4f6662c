"""``/v1/models``: upload a model (imported in isolation into IR), list and read them."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from service.api.deps import (
    BlobsDep,
    CurrentKey,
    CurrentTeam,
    LimitsDep,
    SessionDep,
    SettingsDep,
    TrustUploadsDep,
)
from service.api.params import Limit, ModelId, Skip
from service.api.responses import errors
from service.api.uploads import MODEL_FORM, import_upload, model_fields
from service.db import repos
from service.domain import add_model
from service.schemas import ModelDetail, ModelPublic, ModelsPublic

__all__ = ["router"]

router = APIRouter(
    prefix="/models",
    tags=["models"],
    responses=errors(401, 422, 429, 503),
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelDetail,
    openapi_extra=MODEL_FORM,
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
    row = await import_upload(
        request,
        settings=settings,
        blobs=blobs,
        limits=limits,
        check=model_fields,
        load=lambda upload, name: add_model(
            session,
            store=blobs,
            team=team,
            name=name,
            path=upload.path,
            sha256=upload.sha256,
            trust=trust,
            created_by=key,
            filename=upload.filename,
        ),
    )
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
