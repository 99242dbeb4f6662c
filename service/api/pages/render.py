"""Rendering dashboard pages: one Jinja environment, the number formats, the error page.

Templates live in ``service/api/pages/templates`` (shipped with the package) and are
autoescaped: every value a user chose (a model name, a key name, an error message) is
text, never markup. Charts are SVG built by :mod:`service.api.pages.charts` and passed
in as :class:`markupsafe.Markup`, the one way markup enters a page.

Number formats, used by every page so that one figure reads the same everywhere:
``bytes`` ("12.3 KiB", binary prefixes, exact bytes below 1 KiB), ``metric`` (4
significant digits), ``ratio`` ("8.1" and a times sign), ``duration`` ("1m05s"), ``when`` (UTC,
to the minute).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from service.api.pages.auth import PREFIX, Viewer

__all__ = [
    "TEMPLATES",
    "fmt_bytes",
    "fmt_duration",
    "fmt_metric",
    "fmt_ratio",
    "fmt_when",
    "render",
    "render_error",
]

TEMPLATES = Path(__file__).parent / "templates"

NONE = "\u2013"
"""What a missing figure shows (an en dash)."""
TIMES = "\u00d7"

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def fmt_bytes(n: float | None) -> str:
    """``1234567`` → ``"1.18 MiB"``; below 1 KiB the exact count (``"812 B"``); None → NONE."""
    if n is None:
        return NONE
    value, unit = float(n), 0
    while abs(value) >= 1024 and unit < len(_UNITS) - 1:
        value, unit = value / 1024, unit + 1
    if unit == 0:
        return f"{int(value):,} B"
    return f"{value:.3g} {_UNITS[unit]}" if value < 100 else f"{value:,.0f} {_UNITS[unit]}"


def fmt_metric(x: float | None) -> str:
    """A metric value to 4 significant digits; None or NaN → NONE."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return NONE
    return f"{x:.4g}"


def fmt_ratio(x: float | None) -> str:
    """A compression ratio: ``8.06`` → ``"8.1" and a times sign``; None → NONE."""
    return NONE if x is None or not math.isfinite(x) else f"{x:.3g}{TIMES}"


def fmt_duration(seconds: float | None) -> str:
    """``65`` → ``"1m05s"``, ``3725`` → ``"1h02m"``, ``4.2`` → ``"4s"``; None → NONE."""
    if seconds is None or seconds < 0:
        return NONE
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_when(t: datetime | None) -> str:
    """A time in UTC to the minute (``"2026-12-04 23:58"``); None → NONE."""
    if t is None:
        return NONE
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        bytes=fmt_bytes, metric=fmt_metric, ratio=fmt_ratio, duration=fmt_duration, when=fmt_when
    )
    env.globals["ui"] = PREFIX
    return env


ENV = _env()


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """The page ``template`` rendered with ``context`` plus what every page shows.

    Every page gets ``viewer`` (None on the sign-in page), ``csrf`` (its forms' token)
    and ``path`` (the request's path, for the navigation's current entry).
    """
    page = ENV.get_template(template).render(
        viewer=viewer,
        csrf="" if viewer is None else viewer.csrf,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(page, status_code=status)


_TITLES = {
    400: "Bad request",
    401: "Sign in",
    403: "Refused",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Cannot use that",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Busy",
}


def render_error(
    request: Request, code: str, message: str, *, status: int, headers: dict[str, str]
) -> Response:
    """A dashboard error: a page with the error's code and message and the same status.

    An unsigned-in visitor (401) is sent to the sign-in page instead, with the page
    they asked for as ``next`` so that signing in brings them back.
    """
    if status == 401:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return RedirectResponse(f"{PREFIX}/signin?next={quote(target, safe='/')}", status_code=303)
    page = ENV.get_template("error.html").render(
        viewer=None,
        csrf="",
        path=request.url.path,
        title=_TITLES.get(status, "Error"),
        code=code,
        message=message,
        status=status,
    )
    return HTMLResponse(page, status_code=status, headers=headers)
