"""``/metrics``: the Prometheus scrape target, open without an API key like the probes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from service.metrics import CONTENT_TYPE, render

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request) -> Response:
    """Prometheus metrics: jobs by state, trials done, queue depth, broker health, latency.

    Always 200 while the process runs: a backend that cannot be reached shows as
    `mpq_broker_up 0` or `mpq_database_up 0` instead of failing the scrape.
    """
    return Response(render(request.app.state.metrics), media_type=CONTENT_TYPE)
