"""Bounded path and query parameters, shared by every route.

Ids are SQL ``BIGINT`` keys: 1 to 2^63 - 1. A path id or a ``skip`` outside that range
can name no row, and SQLite cannot even bind it (``OverflowError``), so it is refused
where FastAPI reads it: **422** ``invalid_request``, naming the parameter and its range
(the bounds are in the OpenAPI schema too). The repositories answer such an id as a
miss as well (:data:`service.db.repos.MAX_ID`), for callers that are not routes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from service.db.repos import MAX_ID

__all__ = [
    "MAX_ID",
    "DatasetId",
    "JobId",
    "Limit",
    "ModelId",
    "ScheduleId",
    "Skip",
    "WebhookId",
]


def _id(what: str) -> Any:
    return Path(ge=1, le=MAX_ID, description=f"the {what}'s id (1 to 2^63 - 1)")


ModelId = Annotated[int, _id("model")]
DatasetId = Annotated[int, _id("dataset")]
JobId = Annotated[int, _id("job")]
ScheduleId = Annotated[int, _id("schedule")]
WebhookId = Annotated[int, _id("webhook")]
Skip = Annotated[int, Query(ge=0, le=MAX_ID, description="rows to skip, newest first")]
Limit = Annotated[int, Query(ge=1, le=100, description="rows to return, at most 100")]
