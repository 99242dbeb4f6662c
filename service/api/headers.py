"""Security headers on every response, and the one place that says which.

Every response gets ``X-Content-Type-Options: nosniff`` (browsers never guess a type
from the bytes, so a JSON body or an artifact never runs as HTML or script),
``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` (no page of the API is framed),
``Referrer-Policy: no-referrer`` and a ``Content-Security-Policy``:

- the API (JSON, artifacts): ``default-src 'none'``, nothing may load or run;
- the dashboard (``/ui``): the same, and forms may post to the same origin only
  (``form-action 'self'``); no inline script or style at all;
- the docs page (``/docs``): scripts, styles, images and fetches from the API's own
  origin only (``'self'``), plus ``data:`` images (Swagger UI's icons); no inline
  script, which is why the page starts Swagger UI from a file of its own.

Responses under ``/v1`` and the dashboard's pages also get ``Cache-Control: no-store``
(team data must stay out of shared and browser caches) unless the route set its own:
artifact downloads say ``private, no-cache`` so that a client can revalidate with ``If-None-Match``.

:class:`SecurityHeadersMiddleware` sets them as a response starts; the handler of
unexpected errors, which answers outside every middleware, calls
:func:`security_headers` itself.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "API_CSP",
    "DOCS_CSP",
    "DOCS_PREFIX",
    "PAGES_CSP",
    "PAGES_PREFIX",
    "SecurityHeadersMiddleware",
    "relative_path",
    "security_headers",
]

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""Content-Security-Policy of everything but the docs page: nothing loads, nothing runs."""

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
"""Content-Security-Policy of ``/docs`` (Swagger UI served by the API itself)."""

PAGES_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
"""Content-Security-Policy of the dashboard's pages (``/ui``)."""

DOCS_PREFIX = "/docs"
PAGES_PREFIX = "/ui"
PAGES_STATIC = "/ui/static"
API_PREFIX = "/v1"

_COMMON = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def relative_path(scope: Scope) -> str:
    """The request's path below the app's ``root_path`` (``/v1/jobs``, ``/docs``)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def security_headers(path: str) -> dict[str, str]:
    """The security headers of a response to ``path`` (below the root path).

    ``Cache-Control`` is included for ``/v1`` and dashboard paths only; callers keep a route's own.
    """
    headers = dict(_COMMON)
    if _under(path, DOCS_PREFIX):
        headers["Content-Security-Policy"] = DOCS_CSP
    elif _under(path, PAGES_PREFIX):
        headers["Content-Security-Policy"] = PAGES_CSP
    else:
        headers["Content-Security-Policy"] = API_CSP
    if _under(path, API_PREFIX) or (_under(path, PAGES_PREFIX) and not _under(path, PAGES_STATIC)):
        headers["Cache-Control"] = "no-store"
    return headers


class SecurityHeadersMiddleware:
    """ASGI middleware adding :func:`security_headers` to every HTTP response.

    The security headers replace any the app set; ``Cache-Control`` is added only where
    the route set none.

    Args:
        app: the ASGI app to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = security_headers(relative_path(scope))
        cache = wanted.pop("Cache-Control", None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in wanted.items():
                    headers[name] = value
                if cache is not None and "cache-control" not in headers:
                    headers["Cache-Control"] = cache
            await send(message)

        await self.app(scope, receive, send_with_headers)
