"""One router per resource; :data:`api_router` collects the versioned ones."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import datasets, health, jobs, metrics, models, schedules, webhooks

__all__ = ["api_router", "health_router", "metrics_router"]

api_router = APIRouter(prefix="/v1")
api_router.include_router(models.router)
api_router.include_router(datasets.router)
api_router.include_router(jobs.router)
api_router.include_router(schedules.router)
api_router.include_router(webhooks.router)

health_router = health.router
metrics_router = metrics.router
