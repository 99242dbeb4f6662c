"""The ``mpq`` command line: one parser, one way to report errors.

Commands, by module: ``inspect``, ``quantize``, ``eval``, ``ops`` (:mod:`commands.local`);
``export`` (:mod:`commands.export`); ``search`` (:mod:`commands.search`); ``admin`` and
``db`` (:mod:`commands.admin`); ``api`` (:mod:`commands.api`); ``worker`` and ``beat``
(:mod:`commands.worker`); ``up`` (:mod:`commands.up`); ``submit`` (:mod:`commands.submit`)
and ``jobs`` (:mod:`commands.jobs`), clients of a running service. Only the module of the
command given is imported (all of them for ``mpq --help`` or a command unknown), so a
client command such as ``mpq jobs show`` starts without loading PyTorch, FastAPI or Celery.

Errors print as ``error[code]: message`` on stderr with exit status 2 -- never a
traceback (set ``MPQ_DEBUG=1`` to see one for an unexpected internal error).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from engine.errors import MPQError
from service.settings import get_settings

__all__ = ["main"]


REGISTRARS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("commands.local", "add_local_commands", ("inspect", "quantize", "eval", "ops")),
    ("commands.export", "add_export_command", ("export",)),
    ("commands.search", "add_search_command", ("search", "search-worker")),
    ("commands.admin", "add_admin_commands", ("admin", "db")),
    ("commands.api", "add_api_command", ("api",)),
    ("commands.worker", "add_worker_command", ("worker",)),
    ("commands.worker", "add_beat_command", ("beat",)),
    ("commands.up", "add_up_command", ("up",)),
    ("commands.submit", "add_submit_command", ("submit",)),
    ("commands.jobs", "add_jobs_command", ("jobs",)),
)
"""(module, its function registering commands on the subparsers, the commands it adds),
in the order ``mpq --help`` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 user error, 1 internal error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(argv).parse_args(argv)
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


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: with the given command's subparser alone when the command
    is known (its module imported, no other), with every command otherwise."""
    parser = argparse.ArgumentParser(prog="mpq", description="Mixed-precision quantization.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    command = next((a for a in argv or () if not a.startswith("-")), None)
    known = [r for r in REGISTRARS if command in r[2]]
    for module, register, _ in known or REGISTRARS:
        getattr(importlib.import_module(module), register)(sub)
    return parser


def _debug() -> bool:
    """``MPQ_DEBUG``; off when the settings themselves cannot be read."""
    try:
        return get_settings().debug
    except MPQError:
        return False
