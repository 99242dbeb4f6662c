"""``/metrics``: the Prometheus scrape target, behind a token of its own.

Off unless the setting ``metrics_token`` is set: then 404 ``not_found``, as if the route
did not exist. With a token, a scrape must send ``Authorization: Bearer <token>``
(Prometheus: ``authorization: {credentials: ...}`` in the scrape config); anything
else answers 401 ``unauthorized``. API keys do not open it: the metrics are about the
whole service, not one team.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response

from service.errors import NotFoundError, UnauthorizedError
from service.metrics import CONTENT_TYPE, render
from service.schemas import ErrorResponse

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


def _check_token(request: Request) -> None:
    token: str = request.app.state.settings.metrics_token
    if not token:
        raise NotFoundError(
            "metrics are off; set MPQ_METRICS_TOKEN on the API to serve them at /metrics"
        )
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        sent.strip().encode("utf-8", "surrogateescape"), token.encode()
    ):
        raise UnauthorizedError(
            "/metrics needs the metrics token: send 'Authorization: Bearer <token>' with "
            "the value of the API's MPQ_METRICS_TOKEN"
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"},
        401: {"model": ErrorResponse, "description": "no or a wrong metrics token"},
        404: {"model": ErrorResponse, "description": "metrics are off (no metrics token)"},
    },
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: jobs by state, trials done, queue depth, backends up, latency.

    Needs `Authorization: Bearer <metrics token>` (the setting `MPQ_METRICS_TOKEN`; not an
    API key); without the setting the route answers 404. The numbers are totals over
    the whole service, never per team. A backend that cannot be reached shows as
    `mpq_broker_up 0` or `mpq_database_up 0` instead of failing the scrape.
    """
    _check_token(request)
    return Response(render(request.app.state.metrics), media_type=CONTENT_TYPE)
