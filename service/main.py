"""The FastAPI application: :func:`create_app` builds it; ``app`` is what uvicorn serves.

``uvicorn service.main:app`` (or ``mpq api``) serves the settings read from the
environment; tests and embedders call :func:`create_app` with their own
:class:`~service.settings.Settings`. Creating the app touches neither the database nor
the disk: the engine is made at startup and disposed at shutdown.

Middleware, outermost first: security headers (:mod:`service.api.headers`), request
metrics, per-key rate limits (:mod:`service.api.ratelimit`), the JSON body size limit
(:mod:`service.api.limits`). So every answer, a 429 or a 413 included, is timed and
carries the security headers, and a request over its rate costs no body read.
Starlette's trailing-slash redirect is off (it built an absolute URL from the request's
``Host`` header): ``/v1/jobs/`` is 404 like any unknown path. ``/docs`` is Swagger UI
served from the package (:mod:`service.api.docs`), not from a CDN; the team dashboard
is under ``/ui`` (:mod:`service.api.pages`), and ``/`` leads there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api.docs import router as docs_router
from service.api.errors import install_error_handlers
from service.api.headers import SecurityHeadersMiddleware
from service.api.limits import BodyLimitMiddleware
from service.api.pages import install_pages
from service.api.ratelimit import RateLimitMiddleware
from service.api.routes import api_router, health_router, metrics_router
from service.api.slots import Limits
from service.db.session import make_engine, session_factory
from service.metrics import install_metrics
from service.queue import make_celery
from service.settings import Settings, get_settings

__all__ = ["app", "create_app"]

VERSION = "0.1.0"
DESCRIPTION = """\
Mixed-precision quantization as a service: upload a model (`.pt2` or `.onnx`) and its
data, then search per-layer numeric formats.

Every route except `/healthz`, `/readyz` and `/metrics` (Prometheus) needs
`Authorization: Bearer <API key>`; `/metrics` needs the metrics token instead, and is
off unless one is set.
Errors always have the body `{"error": {"code": "...", "message": "..."}}`; clients
match on `code`. Each API key may make `MPQ_RATE_LIMIT_BURST` requests at once and
`MPQ_RATE_LIMIT_PER_S` per second; past that: 429 `rate_limited` with `Retry-After`.
JSON bodies are limited to `MPQ_MAX_JSON_BYTES` (413 `body_too_large`).
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API application.

    Args:
        settings: the configuration; ``None`` for :func:`service.settings.get_settings`
            (the ``MPQ_*`` environment).

    Returns:
        The app, with its routers, error handlers and middleware;
        ``app.state`` holds ``settings``, ``trust_uploads``, ``metrics`` (its Prometheus
        registry), ``limits`` (its upload and import slots) and, while it runs,
        ``engine``, ``sessions`` and ``queue``.
    """
    settings = get_settings() if settings is None else settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout_s=settings.db_pool_timeout_s,
        )
        app.state.engine, app.state.sessions = engine, session_factory(engine)
        app.state.queue = make_celery(settings)
        try:
            yield
        finally:
            app.state.queue.close()
            engine.dispose()

    app = FastAPI(
        title="MPQ",
        version=VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.trust_uploads = settings.trust_uploads
    app.state.limits = Limits.from_settings(settings)
    install_error_handlers(app)
    # add_middleware puts each one outside those added before it
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_json_bytes)
    if settings.rate_limit_per_s > 0:
        app.add_middleware(
            RateLimitMiddleware,
            rate_per_s=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
        )
    install_metrics(app)
    app.add_middleware(SecurityHeadersMiddleware)
    app.include_router(docs_router)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(api_router)
    install_pages(app)
    return app


app = create_app()
