"""The documents stay true to the code: error codes, settings and links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import service.errors  # noqa: F401  (registers the service's error classes)
from engine.errors import MPQError
from service.api.errors import http_status
from service.settings import Settings
from tests.conftest import ROOT

README = ROOT / "README.md"
ERRORS = ROOT / "docs" / "errors.md"
DOCUMENTS = sorted([README, *(ROOT / "docs").glob("*.md"), *ROOT.glob("*/README.md")])
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _errors(cls: type[MPQError] = MPQError) -> dict[str, type[MPQError]]:
    """Every error class below ``cls`` (engine and service), by code."""
    found: dict[str, type[MPQError]] = {}
    for sub in cls.__subclasses__():
        found |= {sub.code: sub, **_errors(sub)}
    return found


def test_errors_page_lists_every_code_with_its_status() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d*) \|", ERRORS.read_text(), re.M))
    for code, error in _errors().items():
        assert code in rows, f"docs/errors.md lacks the code {code!r}"
        assert rows[code] == str(http_status(error)), f"docs/errors.md: status of {code!r}"


def test_readme_documents_every_setting() -> None:
    documented = set(re.findall(r"^\| `(MPQ_\w+)` \|", README.read_text(), re.M))
    expected = {f"MPQ_{name.upper()}" for name in Settings.model_fields}
    assert expected <= documented, f"README.md settings table lacks {expected - documented}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_into_the_repository(document: Path) -> None:
    for target in LINK.findall(document.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = (document.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), f"{document.name}: {target} is outside the repository"
        assert path.exists(), f"{document.name}: {target} does not exist"
