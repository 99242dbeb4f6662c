"""``mpq submit``'s flags: those of ``mpq search``, and the documented command lines parse."""

from __future__ import annotations

import re
import shlex

import pytest

from commands.main import _parser
from commands.spec_flags import SPEC_FLAGS, spec_document
from tests.conftest import ROOT

SHELL = {"MODEL": "m.pt2", "DATA": "d.npz", "OUT": "out", "TRIALS": "40"}
"""The cron script's variables, as the shell would expand them."""
SUBMIT_LINE = re.compile(r"^\s*(mpq submit (?:.*\\\n)*.*)$", re.M)


def submit_lines(text: str) -> list[str]:
    """Every ``mpq submit ...`` command of ``text``, continuation lines joined."""
    return [m.replace("\\\n", " ") for m in SUBMIT_LINE.findall(text)]


def test_submit_takes_every_job_option_of_search() -> None:
    search = _parser().parse_args(["search", "m.pt2", "--data", "d.npz", "--out", "o"])
    submit = _parser().parse_args(["submit", "m.pt2", "--data", "d.npz"])
    for row in SPEC_FLAGS:
        assert hasattr(search, row.dest) and hasattr(submit, row.dest), row.flag


def test_timeout_is_the_jobs_budget_and_wait_timeout_the_clients() -> None:
    args = _parser().parse_args(
        ["submit", "id:1", "--data", "id:2", "--timeout", "60", "--wait-timeout", "600"]
    )
    assert spec_document(args) == {"budget": {"timeout_s": 60.0}}
    assert args.wait_timeout == 600.0


@pytest.mark.parametrize("page", ["docs/pipelines.md", "README.md"])
def test_the_documented_submit_commands_parse(page: str) -> None:
    lines = [x for x in submit_lines((ROOT / page).read_text()) if "[" not in x]  # no synopsis
    assert lines, f"{page} shows no `mpq submit` command"
    for line in lines:
        words = shlex.split(re.sub(r"\$(\w+)", lambda m: SHELL[m[1]], line), comments=True)
        ends = [i for i, w in enumerate(words) if w in (">", "||", "|", ";", "&&")]
        command = words[1 : ends[0] if ends else None]
        args = _parser().parse_args(command)  # argparse exits 2 on a flag it does not know
        assert args.wait or args.download is not None, line
