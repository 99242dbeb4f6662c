"""``/v1/datasets``: upload a data file validated against a model's inputs; read them."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from service.api.deps import (
    BlobsDep,
    CurrentKey,
    CurrentTeam,
    LimitsDep,
    SessionDep,
    SettingsDep,
)
from service.api.params import DatasetId, Limit, Skip
from service.api.responses import errors
from service.api.uploads import DATASET_FORM, dataset_fields, import_upload
from service.db import repos
from service.domain import add_dataset
from service.schemas import DatasetPublic, DatasetsPublic

__all__ = ["router"]

router = APIRouter(
    prefix="/datasets",
    tags=["datasets"],
    responses=errors(401, 422, 429, 503),
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    openapi_extra=DATASET_FORM,
    responses=errors(404, 408, 413, 503),
)
async def upload_dataset(
    request: Request,
    session: SessionDep,
    team: CurrentTeam,
    key: CurrentKey,
    settings: SettingsDep,
    blobs: BlobsDep,
    limits: LimitsDep,
) -> DatasetPublic:
    """Upload an `.npz` or `.safetensors` file with one array per input of `model_id`.

    Arrays are matched to the model's inputs by name or position (optional `labels`,
    optional `calib/<input>` arrays); the file is never unpickled. A mismatch answers
    422 with the data error's code (`missing_inputs`, `data_shape`, ...); a `model_id`
    that is not a whole number in ASCII digits up to 2**63-1 answers 422
    `invalid_request`, a blank `name` 422 `invalid_name`, both before the file is read.
    Busy and stalled uploads are answered as for models (503 `busy`, 408 `upload_timeout`).
    """
    row = await import_upload(
        request,
        settings=settings,
        blobs=blobs,
        limits=limits,
        check=dataset_fields,
        load=lambda upload, fields: add_dataset(
            session,
            store=blobs,
            team=team,
            name=fields[0],
            model_id=fields[1],
            path=upload.path,
            sha256=upload.sha256,
            created_by=key,
            filename=upload.filename or "upload",
            max_bytes=settings.max_dataset_bytes,
        ),
    )
    return DatasetPublic.model_validate(row)


@router.get("", response_model=DatasetsPublic)
def list_datasets(
    session: SessionDep,
    team: CurrentTeam,
    skip: Skip = 0,
    limit: Limit = 20,
) -> DatasetsPublic:
    """The team's datasets, newest first (`skip`/`limit` pagination; `count` is the total)."""
    rows = repos.list_datasets(session, team=team, skip=skip, limit=limit)
    return DatasetsPublic(
        data=[DatasetPublic.model_validate(r) for r in rows],
        count=repos.count_datasets(session, team=team),
    )


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=errors(404))
def get_dataset(dataset_id: DatasetId, session: SessionDep, team: CurrentTeam) -> DatasetPublic:
    """One of the team's datasets (another team's id: 404)."""
    return DatasetPublic.model_validate(
        repos.get_dataset(session, team=team, dataset_id=dataset_id)
    )
