"""Health probes, open without an API key: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy.exc import SQLAlchemyError

from service.db.migrate import check_schema
from service.errors import DatabaseUnavailableError
from service.metrics import broker_queue_depth
from service.schemas import ErrorResponse, Status

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Status)
def healthz() -> Status:
    """Liveness: the process answers HTTP."""
    return Status(status="ok")


@router.get(
    "/readyz",
    response_model=Status,
    responses={
        503: {
            "model": ErrorResponse,
            "description": "`database_unavailable`, `database_schema` or `broker_unavailable`",
        }
    },
)
def readyz(request: Request) -> Status:
    """Readiness: the database is reachable and migrated, and the broker answers.

    The database is checked first; the broker probe gives up after about 2 s.
    """
    engine = request.app.state.engine
    try:
        check_schema(engine)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError(
            f"cannot reach the database ({type(exc).__name__}); check MPQ_DATABASE_URL "
            "and that the server is up"
        ) from None
    # raises BrokerUnavailableError (503 broker_unavailable) past its timeout
    broker_queue_depth(request.app.state.queue, request.app.state.settings.queue)
    return Status(status="ready")
