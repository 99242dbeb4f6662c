"""The documents stay true to the code: error codes, settings and links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import engine.errors
from service.api.errors import STATUS, status_of
from service.settings import Settings
from tests.conftest import ROOT

README = ROOT / "README.md"
ERRORS = ROOT / "docs" / "errors.md"
DOCUMENTS = sorted([README, *(ROOT / "docs").glob("*.md"), *ROOT.glob("*/README.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")
EXTRA_SETTINGS = ("MPQ_TRUST_UPLOADS", "MPQ_CACHE_DIR", "MPQ_DEBUG")
"""Variables documented beside the ``Settings`` fields (read where they are used)."""


def _error_codes() -> set[str]:
    classes = (getattr(engine.errors, name) for name in engine.errors.__all__)
    return {c.code for c in classes if c is not engine.errors.MPQError}


def test_errors_page_lists_every_code_with_its_status() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d*) \|", ERRORS.read_text(), re.M))
    for code in _error_codes() | set(STATUS):
        assert code in rows, f"docs/errors.md lacks the code {code!r}"
        assert rows[code] == str(status_of(code)), f"docs/errors.md: status of {code!r}"


def test_readme_documents_every_setting() -> None:
    documented = set(re.findall(r"^\| `(MPQ_\w+)` \|", README.read_text(), re.M))
    expected = {f"MPQ_{name.upper()}" for name in Settings.model_fields} | set(EXTRA_SETTINGS)
    assert expected <= documented, f"README.md settings table lacks {expected - documented}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_into_the_repository(document: Path) -> None:
    for target in LINK.findall(document.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (document.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{document.name}: {target} is outside the repository"
        assert path.exists(), f"{document.name}: {target} does not exist"
