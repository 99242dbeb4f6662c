"""``python -m commands ARGS``: the ``mpq`` command line."""

from __future__ import annotations

import sys

from commands.main import main

sys.exit(main())
