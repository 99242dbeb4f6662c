"""The HTTP API: app factory in :mod:`service.main`, routers under :mod:`service.api.routes`.

``mpq api`` (:mod:`commands.api`) serves it with uvicorn.
"""

from __future__ import annotations

__all__: list[str] = []
