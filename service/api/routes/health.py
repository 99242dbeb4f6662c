"""Health probes, open without an API key: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import QueuePool
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.api.slots import Limits
from service.db.migrate import check_schema
from service.errors import BusyError, DatabaseBusyError, DatabaseUnavailableError
from service.metrics import broker_queue_depth
from service.schemas import ErrorResponse, Status
from service.settings import Settings

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
            "description": "`busy` (every upload slot taken), `database_busy` "
            "(every pooled connection in use), `database_unavailable`, `database_schema` "
            "or `broker_unavailable`",
        }
    },
)
def readyz(request: Request) -> Status:
    """Readiness: the process has room, the database is reachable and migrated, and the
    broker answers.

    A saturated process is not ready: every upload slot taken, so that the next upload
    would be refused (503 `busy`), or every connection of its database pool checked out
    (503 `database_busy`) -- a load balancer then sends new requests elsewhere. Busy
    import slots alone are not saturation: uploads queue for them holding their upload
    slots, so a backlog of imports fills the upload slots. Both are counted, not
    probed; then the database is checked, then the broker (its probe gives up after
    about 2 s).
    """
    settings: Settings = request.app.state.settings
    engine = request.app.state.engine
    _check_room(request.app.state.limits, engine.pool, settings)
    try:
        check_schema(engine)
    except PoolTimeoutError:
        raise _database_busy(settings) from None
    except SQLAlchemyError as exc:
        raise DatabaseUnavailableError(
            f"cannot reach the database ({type(exc).__name__}); check MPQ_DATABASE_URL "
            "and that the server is up"
        ) from None
    # raises BrokerUnavailableError (503 broker_unavailable) past its timeout
    broker_queue_depth(request.app.state.queue, request.app.state.settings.queue)
    return Status(status="ready")


def _check_room(limits: Limits, pool: object, settings: Settings) -> None:
    if limits.uploads.full:
        raise BusyError(
            f"not ready: all {limits.uploads.size} upload slots are taken",
            retry_after_s=settings.busy_retry_after_s,
        )
    capacity = settings.db_pool_size + settings.db_max_overflow
    if isinstance(pool, QueuePool) and pool.checkedout() >= capacity:
        raise _database_busy(settings)


def _database_busy(settings: Settings) -> DatabaseBusyError:
    return DatabaseBusyError(
        f"not ready: all {settings.db_pool_size + settings.db_max_overflow} database "
        "connections are in use",
        retry_after_s=settings.busy_retry_after_s,
    )
