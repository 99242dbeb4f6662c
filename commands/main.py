"""The ``mpq`` command line: one parser, one way to report errors.

Commands, by module: ``inspect``, ``quantize``, ``eval``, ``ops`` (:mod:`commands.local`);
``export`` (:mod:`commands.export`); ``search`` (:mod:`commands.search`); ``admin`` and
``db`` (:mod:`commands.admin`); ``api`` (:mod:`commands.api`); ``worker`` and ``beat``
(:mod:`commands.worker`); ``up`` (:mod:`commands.up`); ``submit`` (:mod:`commands.submit`)
and ``jobs`` (:mod:`commands.jobs`), clients of a running service. Each module registers its
commands and imports the heavy packages (torch, FastAPI, Celery) only when one runs.

Errors print as ``error[code]: message`` on stderr with exit status 2 -- never a
traceback (set ``MPQ_DEBUG=1`` to see one for an unexpected internal error).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from commands.admin import add_admin_commands
from commands.api import add_api_command
from commands.export import add_export_command
from commands.jobs import add_jobs_command
from commands.local import add_local_commands
from commands.search import add_search_command
from commands.submit import add_submit_command
from commands.up import add_up_command
from commands.worker import add_beat_command, add_worker_command
from engine.errors import MPQError
from service.settings import get_settings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 user error, 1 internal error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except MPQError as exc:
        print(f"error[{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _debug():
            traceback.print_exc()
        print(
            f"error[internal]: unexpected {type(exc).__name__}; this is a bug in MPQ. "
            "Re-run with MPQ_DEBUG=1 and report the traceback.",
            file=sys.stderr,
        )
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpq", description="Mixed-precision quantization.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    add_local_commands(sub)
    add_export_command(sub)
    add_search_command(sub)
    add_admin_commands(sub)
    add_api_command(sub)
    add_worker_command(sub)
    add_beat_command(sub)
    add_up_command(sub)
    add_submit_command(sub)
    add_jobs_command(sub)
    return parser


def _debug() -> bool:
    """``MPQ_DEBUG``; off when the settings themselves cannot be read."""
    try:
        return get_settings().debug
    except MPQError:
        return False
