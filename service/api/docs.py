"""``/docs``: Swagger UI served by the API itself, so that it renders offline.

FastAPI's own docs page loads Swagger UI from a CDN (blank without internet, and
without subresource integrity) and starts it with an inline script (which a strict
Content-Security-Policy forbids). This page loads Swagger UI 5 (it renders OpenAPI 3.1,
which FastAPI emits) from ``service/api/static/`` (see ``VENDORED.md`` there) and starts
it from a file of its own, ``swagger-init.js``. ReDoc's CDN page is not served.

Asset URLs are fixed (:data:`ASSETS`, nothing else under ``/docs/assets`` is served)
and each has an explicit media type, since responses say ``nosniff``.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from service.errors import NotFoundError

__all__ = ["ASSETS", "ASSET_PREFIX", "STATIC_DIR", "docs_html", "router"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
"""The vendored Swagger UI files and the page's start script (package data)."""

ASSET_PREFIX = "/docs/assets"

ASSETS: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-init.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
}
"""The files under :data:`ASSET_PREFIX`, with their media types."""

ASSET_MAX_AGE_S = 3600
"""How long a browser may reuse an asset without asking (they change only on upgrade)."""

router = APIRouter(include_in_schema=False)


def docs_html(*, title: str, root_path: str, openapi_url: str) -> str:
    """The docs page: Swagger UI's stylesheet and scripts, all from the API itself.

    Args:
        title: the page title (the API's).
        root_path: the prefix the API is served under (``""`` at the root).
        openapi_url: the OpenAPI document's path below ``root_path``.
    """
    assets = html.escape(root_path + ASSET_PREFIX, quote=True)
    spec = html.escape(root_path + openapi_url, quote=True)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} - API docs</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{spec}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    """The interactive API documentation (Swagger UI)."""
    app = request.app
    page = docs_html(
        title=app.title,
        root_path=request.scope.get("root_path", ""),
        openapi_url=app.openapi_url or "/openapi.json",
    )
    return HTMLResponse(page)


@router.get(ASSET_PREFIX + "/{name}")
def docs_asset(name: str) -> FileResponse:
    """One of the docs page's files (:data:`ASSETS`)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFoundError(f"no docs asset named {name[:80]!r}; the docs page is at /docs")
    return FileResponse(
        STATIC_DIR / name,
        media_type=media_type,
        headers={"Cache-Control": f"public, max-age={ASSET_MAX_AGE_S}"},
    )
