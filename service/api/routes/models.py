"""``/v1/models``: upload a model (imported in isolation into IR), list and read them.

Versions and aliases (``/v1/models/{name}/versions``, ``/v1/models/{name}/aliases/{alias}``)
take the model *name*, URL-encoded (``/`` as ``%2F``); a path of one segment is a model id.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request, Response, status

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
from service.db.models import Model
from service.domain import add_model, delete_alias, model_versions, set_alias
from service.schemas import ModelDetail, ModelPublic, ModelsPublic
from service.schemas_schedules import AliasUpdate, ModelVersionsPublic

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
        data=_public(session, rows),
        count=repos.count_models(session, team=team),
    )


def _public(session: SessionDep, rows: Sequence[Model]) -> list[ModelPublic]:
    aliases = repos.list_aliases(session, model_ids=[r.id for r in rows])
    return [
        ModelPublic.model_validate(r).model_copy(update={"aliases": aliases[r.id]}) for r in rows
    ]


@router.get("/{model_id}", response_model=ModelDetail, responses=errors(404))
def get_model(model_id: ModelId, session: SessionDep, team: CurrentTeam) -> ModelDetail:
    """One of the team's models, with its layer inventory (another team's id: 404)."""
    row = repos.get_model(session, team=team, model_id=model_id)
    aliases = repos.list_aliases(session, model_ids=[row.id])[row.id]
    return ModelDetail.model_validate(row).model_copy(update={"aliases": aliases})


@router.get("/{name:path}/versions", response_model=ModelVersionsPublic, responses=errors(404))
def list_versions(name: str, session: SessionDep, team: CurrentTeam) -> ModelVersionsPublic:
    """The team's versions of model `name`, newest first, each with its `aliases`.

    An unknown name answers 404 `not_found`.
    """
    rows = model_versions(session, team=team, name=name)
    data = [ModelPublic.model_validate(m).model_copy(update={"aliases": a}) for m, a in rows]
    return ModelVersionsPublic(name=name, data=data, count=len(data))


@router.put("/{name:path}/aliases/{alias}", response_model=ModelPublic, responses=errors(404))
def put_alias(
    name: str,
    alias: str,
    body: AliasUpdate,
    session: SessionDep,
    team: CurrentTeam,
    key: CurrentKey,
) -> ModelPublic:
    """Point `alias` of model `name` at version `version` (creating or moving it).

    Answers the version it names now. Aliases are 1 to 64 of `a-z 0-9 _ -`, not all
    digits, not `latest` (reserved: the highest version): else 422 `invalid_alias`.
    An unknown name or version answers 404 `not_found`.
    """
    model = set_alias(
        session, team=team, name=name, alias=alias, version=body.version, updated_by=key
    )
    return _public(session, [model])[0]


@router.delete(
    "/{name:path}/aliases/{alias}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(404),
)
def remove_alias(name: str, alias: str, session: SessionDep, team: CurrentTeam) -> Response:
    """Remove `alias` of model `name` (404 `not_found` if it has no such alias)."""
    delete_alias(session, team=team, name=name, alias=alias)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
