"""The ``mpq`` parser: every command registered for ``--help``, one module per command run.

A client command (``mpq jobs``, which a pipeline may call in a loop) must start without
PyTorch, FastAPI or Celery; the test imports in a fresh interpreter and looks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from commands.main import REGISTRARS, _parser
from tests.service.api.conftest import ROOT

HEAVY = ("torch", "fastapi", "celery", "optuna")


def _loaded_after(argv: list[str]) -> dict[str, bool]:
    """Which heavy packages ``mpq ARGV`` (parsed, not run) has imported, in a fresh process."""
    code = (
        "import json, sys\n"
        "from commands.main import _parser\n"
        f"_parser({argv!r}).parse_args({argv!r})\n"
        f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded: dict[str, bool] = json.loads(out.stdout)
    return loaded


@pytest.mark.parametrize(
    "argv", [["jobs", "list"], ["jobs", "show", "3", "--json"], ["admin", "create-team", "x"]]
)
def test_a_client_command_loads_no_heavy_package(argv: list[str]) -> None:
    assert _loaded_after(argv) == dict.fromkeys(HEAVY, False)


def test_every_command_is_registered_when_none_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        _parser(["--help"]).parse_args(["--help"])
    assert stop.value.code == 0
    listed = capsys.readouterr().out
    commands = [c for _, _, names in REGISTRARS for c in names if c != "search-worker"]
    missing = [c for c in commands if not re.search(rf"^ +{re.escape(c)}( |$)", listed, re.M)]
    assert missing == [], listed


def test_a_known_command_gets_its_own_parser_and_an_unknown_one_the_full_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = _parser(["jobs", "show", "3"]).parse_args(["jobs", "show", "3"])
    assert args.func.__module__ == "commands.jobs"
    with pytest.raises(SystemExit) as stop:
        _parser(["nosuch"]).parse_args(["nosuch"])
    assert stop.value.code == 2
    assert "invalid choice: 'nosuch'" in capsys.readouterr().err
