"""Imports point one way: commands -> workers -> service -> search -> engine."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS = ("engine", "search", "service", "workers", "commands")
"""Bottom to top: a package may import those before it, never those after."""


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", FLOORS[1:-1])
def test_no_package_imports_one_above_it(package: str) -> None:
    above = set(FLOORS[FLOORS.index(package) + 1 :])
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    offenders = [
        f"{path.relative_to(ROOT)}: {root}"
        for path in files
        for root in sorted(_imported_roots(path) & above)
    ]
    assert offenders == []


def test_nothing_outside_the_command_line_imports_it() -> None:
    files = [
        path
        for folder in ("engine", "search", "service", "workers", "bench", "examples", "alembic")
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]
    assert [str(p.relative_to(ROOT)) for p in files if "commands" in _imported_roots(p)] == []
