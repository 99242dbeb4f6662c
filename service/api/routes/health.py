"""Health probes, open without an API key: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError

from engine.errors import DatabaseUnavailableError
from service.db.migrate import check_schema
from service.schemas import Status

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status)
def healthz() -> Status:
    """Liveness: the process answers HTTP."""
    return Status(status="ok")


@router.get(
    "/readyz",
    response_model=Status,
    responses={503: {"description": "`database_unavailable` or `database_schema`"}},
)
def readyz(request: Request) -> Status:
    """Readiness: the database is reachable and migrated to this code's schema."""
    engine = request.app.state.engine
    try:
        check_schema(engine)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError(
            f"cannot reach the database ({type(exc).__name__}); check MPQ_DATABASE_URL "
            "and that the server is up"
        ) from None
    return Status(status="ready")
