"""API schemas (Pydantic), kept apart from the ORM models; one family per resource.

``<Resource>Public`` is what a list shows, ``<Resource>Detail`` what one record's page
adds, ``<Resource>sPublic(data, count)`` a page of a list with the team's total count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DatasetPublic",
    "DatasetsPublic",
    "ErrorBody",
    "ErrorResponse",
    "ModelDetail",
    "ModelPublic",
    "ModelsPublic",
    "Status",
]


class Status(BaseModel):
    """A health probe's answer."""

    status: str = Field(examples=["ok"])


class ErrorBody(BaseModel):
    """What went wrong: a stable ``code`` and a message saying how to fix it."""

    code: str = Field(examples=["not_found"])
    message: str


class ErrorResponse(BaseModel):
    """The one shape of every error response."""

    error: ErrorBody


class ModelPublic(BaseModel):
    """An uploaded model (without its inventory)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    version: int = Field(description="1, 2, ... per (team, name)")
    kind: str = Field(description="the uploaded format: pt2 or onnx")
    sha256: str
    size_bytes: int
    created_at: datetime


class ModelDetail(ModelPublic):
    """An uploaded model with its layer inventory (``engine.inventory``)."""

    inventory: dict[str, Any]


class ModelsPublic(BaseModel):
    """A page of the team's models, newest first, and how many it has in all."""

    data: list[ModelPublic]
    count: int


class DatasetPublic(BaseModel):
    """An uploaded data file, validated against a model's inputs."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    sha256: str
    size_bytes: int
    num_samples: int = Field(description="calibration + evaluation samples")
    inputs: dict[str, Any] = Field(description="model input name -> {shape, dtype}")
    created_at: datetime


class DatasetsPublic(BaseModel):
    """A page of the team's datasets, newest first, and how many it has in all."""

    data: list[DatasetPublic]
    count: int
