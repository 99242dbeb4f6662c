"""The engine imports only the standard library, torch and numpy (layers point one way)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"
ALLOWED = {"torch", "numpy", "engine"}


def test_engine_imports_only_stdlib_torch_numpy() -> None:
    offenders: list[str] = []
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 5
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            offenders += [
                f"{path.relative_to(ENGINE.parent)}: {r}"
                for r in roots
                if r not in ALLOWED and r not in sys.stdlib_module_names
            ]
    assert offenders == []
