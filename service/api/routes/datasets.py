"""``/v1/datasets``: upload a data file validated against a model's inputs; read them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from starlette.concurrency import run_in_threadpool

from service.api.deps import BlobsDep, CurrentKey, CurrentTeam, SessionDep, SettingsDep
from service.api.multipart import openapi_form, receive_upload
from service.api.responses import errors
from service.db import repos
from service.domain import add_dataset
from service.schemas import DatasetPublic, DatasetsPublic

__all__ = ["router"]

router = APIRouter(
    prefix="/datasets",
    tags=["datasets"],
    responses=errors(401, 422),
)

MULTIPART = openapi_form(
    name={"type": "string"},
    model_id={
        "type": "integer",
        "minimum": 0,
        "description": "the model whose inputs the arrays feed",
    },
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    openapi_extra=MULTIPART,
    responses=errors(404, 413),
)
async def upload_dataset(
    request: Request,
    session: SessionDep,
    team: CurrentTeam,
    key: CurrentKey,
    settings: SettingsDep,
    blobs: BlobsDep,
) -> DatasetPublic:
    """Upload an `.npz` or `.safetensors` file with one array per input of `model_id`.

    Arrays are matched to the model's inputs by name or position (optional `labels`,
    optional `calib/<input>` arrays); the file is never unpickled. A mismatch answers
    422 with the data error's code (`missing_inputs`, `data_shape`, ...).
    """
    upload = await receive_upload(request, store=blobs, max_bytes=settings.max_upload_bytes)
    try:
        name, model_id = upload.text("name"), upload.integer("model_id")
    except BaseException:
        upload.discard()
        raise
    row = await run_in_threadpool(
        lambda: add_dataset(
            session,
            store=blobs,
            team=team,
            name=name,
            model_id=model_id,
            path=upload.path,
            sha256=upload.sha256,
            created_by=key,
        )
    )
    return DatasetPublic.model_validate(row)


@router.get("", response_model=DatasetsPublic)
def list_datasets(
    session: SessionDep,
    team: CurrentTeam,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> DatasetsPublic:
    """The team's datasets, newest first (`skip`/`limit` pagination; `count` is the total)."""
    rows = repos.list_datasets(session, team=team, skip=skip, limit=limit)
    return DatasetsPublic(
        data=[DatasetPublic.model_validate(r) for r in rows],
        count=repos.count_datasets(session, team=team),
    )


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=errors(404))
def get_dataset(dataset_id: int, session: SessionDep, team: CurrentTeam) -> DatasetPublic:
    """One of the team's datasets (another team's id: 404)."""
    return DatasetPublic.model_validate(
        repos.get_dataset(session, team=team, dataset_id=dataset_id)
    )
