"""``mpq api [--host H] [--port P]``: serve the HTTP API (:mod:`service.main`) with uvicorn.

Kept light (no FastAPI or uvicorn import) until the command runs, because the ``mpq``
command line registers it on every invocation.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from service.private_files import UMASK
from service.settings import get_settings

__all__ = ["add_api_command"]


def add_api_command(subparsers: Any) -> None:
    """Register ``mpq api [--host H] [--port P]``: serve the API with uvicorn."""
    api = subparsers.add_parser("api", help="serve the HTTP API (uvicorn)")
    api.add_argument("--host", help="interface to bind (default: MPQ_API_HOST or 127.0.0.1)")
    api.add_argument("--port", type=int, help="TCP port (default: MPQ_API_PORT or 8000)")
    api.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    os.umask(UMASK)  # the API's files (uploads, the database) are for its user only
    settings = get_settings()
    host = args.host or settings.api_host
    port = settings.api_port if args.port is None else args.port
    uvicorn.run("service.main:app", host=host, port=port, log_level="info")
    return 0
