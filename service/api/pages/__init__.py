"""The team dashboard: server-rendered pages under ``/ui``, signed in with an API key.

Pages are rendered on the server from Jinja templates (``templates/``); the little script
and the style sheet they use are files of this package (``static/``), served by the app
itself -- no CDN, nothing loaded from elsewhere (the pages' Content-Security-Policy,
:data:`service.api.headers.PAGES_CSP`, allows nothing else). Charts are SVG drawn on
the server (:mod:`service.api.pages.charts`).

Every page acts as the team of the API key its session was opened with
(:mod:`service.api.pages.auth`) and reads and writes through the same domain functions
and repositories as the REST API, so a page shows what the API would answer and
refuses what the API would refuse, with the same error codes and messages.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from service.api.pages import compare, job, jobs, keys, models, new_job, nightly, signin
from service.api.pages.auth import PREFIX
from service.api.pages.render import render_error

__all__ = ["PREFIX", "install_pages"]

STATIC = Path(__file__).parent / "static"


def install_pages(app: FastAPI) -> None:
    """Serve the dashboard from ``app``: its pages, its static files, ``/`` → ``/ui/jobs``."""
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    for module in (signin, jobs, new_job, job, compare, models, nightly, keys):
        router.include_router(module.router)

    @router.get("")
    def ui_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/jobs", status_code=303)

    app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/jobs", status_code=303)

    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="ui-static")
    app.state.page_errors = (PREFIX, render_error)
