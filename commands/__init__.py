"""The ``mpq`` command line, the top floor: it may import every package below it.

:func:`main` runs it (the ``mpq`` script, or ``python -m commands``). Local commands run
the engine and the search in this process (``inspect``, ``quantize``, ``eval``, ``ops``,
``export``, ``search``); process commands start or manage the service (``api``,
``worker``, ``beat``, ``up``, ``db``, ``admin``). Nothing below imports this package.
"""

from __future__ import annotations

from commands.main import main

__all__ = ["main"]
