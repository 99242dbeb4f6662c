"""Layers point one way: what each part of MPQ may import, read from the source (AST only).

The packages: commands -> workers -> service -> search -> engine (each imports only those
after it; nothing imports ``commands``). Modules over 300 lines say why (``Size:``).

No module is imported: every ``import`` / ``from ... import`` statement of every file,
including the ones inside functions, is read with :mod:`ast`.

- the engine imports only the standard library, torch and numpy (nothing else, not
  even behind a guard: onnx, onnxruntime and safetensors appear in tests only);
- inside the engine each package imports only its own level and the levels below
  (:data:`ENGINE_LEVELS`), and another package only through its face (its
  ``__init__``), never one of its modules;
- code outside the engine imports only the engine's faces (``engine``,
  ``engine.ir``, ``engine.io.importers``, ...) and ``engine.errors``: never a
  private (``_``) module or name, never a module behind a face.

Each failure lists the offending imports as ``file:line: module -> what it imports``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "engine"
OUTSIDE = ("search", "service", "workers", "commands", "bench", "examples")
THIRD_PARTY = {"torch", "numpy"}

ENGINE_LEVELS: dict[str, int] = {
    "engine.errors": 0,
    "engine.ir": 0,
    "engine.data": 0,
    "engine.quant": 1,
    "engine.transforms": 2,
    "engine.io": 3,
    "engine": 4,
}
"""Package -> level (0: IR and data; 1: quantization primitives, plans, weight formats;
2: model transforms; 3: formats in and out; 4: the public face, ``engine/__init__.py``
and ``engine/_pipeline.py``). A module belongs to the longest package naming it."""

SAME_LEVEL_ORDER = ("engine.errors", "engine.ir", "engine.data")
"""Within level 0, each may import only the ones before it (no cycle)."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__init__.py").is_file()


def _is_module(module: str) -> bool:
    return _is_package(module) or (ROOT / Path(*module.split("."))).with_suffix(".py").is_file()


def _imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, names taken from it) of every import in ``path``.

    ``from pkg import sub`` where ``sub`` is a module yields ``pkg.sub`` itself.
    """
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names = []
            for alias in node.names:
                if _is_module(f"{module}.{alias.name}"):
                    yield node.lineno, f"{module}.{alias.name}", []
                else:
                    names.append(alias.name)
            if names:
                yield node.lineno, module, names


def _package(module: str) -> str:
    """The entry of :data:`ENGINE_LEVELS` that ``module`` belongs to."""
    return max(
        (p for p in ENGINE_LEVELS if module == p or module.startswith(p + ".")),
        key=len,
    )


def _files(*dirs: str) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        out += sorted((ROOT / d).rglob("*.py")) if (ROOT / d).is_dir() else []
    return [p for p in out if ".venv" not in p.parts]


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_engine_imports_only_stdlib_torch_numpy() -> None:
    files = _files("engine")
    assert len(files) > 20
    offenders = [
        f"{_where(path, line)}: {module}"
        for path in files
        for line, module, _ in _imports(path)
        if (root := module.split(".")[0]) not in THIRD_PARTY | {"engine"}
        and root not in sys.stdlib_module_names
    ]
    assert offenders == [], "engine imports beyond stdlib/torch/numpy:\n" + "\n".join(offenders)


def test_engine_levels_point_down() -> None:
    offenders: list[str] = []
    for path in _files("engine"):
        me = _module_name(path)
        mine = _package(me)
        for line, module, names in _imports(path):
            if module != "engine" and not module.startswith("engine."):
                continue
            theirs = _package(module)
            what = f"{_where(path, line)}: {me} -> {module} {names or ''}".rstrip()
            if ENGINE_LEVELS[theirs] > ENGINE_LEVELS[mine]:
                offenders.append(
                    f"{what} (level {ENGINE_LEVELS[mine]} imports level {ENGINE_LEVELS[theirs]})"
                )
            elif (
                mine in SAME_LEVEL_ORDER
                and theirs in SAME_LEVEL_ORDER
                and SAME_LEVEL_ORDER.index(theirs) > SAME_LEVEL_ORDER.index(mine)
            ):
                offenders.append(f"{what} ({mine} imports {theirs}, which sits on it)")
    assert offenders == [], "engine imports pointing up:\n" + "\n".join(offenders)


def test_engine_packages_meet_through_faces() -> None:
    """A module imports another engine package's face, never a module behind it."""
    offenders: list[str] = []
    for path in _files("engine"):
        me = _module_name(path)
        for line, module, names in _imports(path):
            if not module.startswith("engine.") or _is_package(module):
                continue
            parent = module.rpartition(".")[0]
            if me == parent or me.startswith(parent + "."):
                continue  # a module of its own package (or of a package it is inside)
            if module == "engine.errors":
                continue
            offenders.append(f"{_where(path, line)}: {me} -> {module} {names}")
    assert offenders == [], "imports behind another package's face:\n" + "\n".join(offenders)


def test_outside_code_imports_only_engine_faces() -> None:
    offenders: list[str] = []
    for path in _files(*OUTSIDE):
        for line, module, names in _imports(path):
            if module != "engine" and not module.startswith("engine."):
                continue
            private = [p for p in [*module.split("."), *names] if p.startswith("_")]
            behind_face = not _is_package(module) and module != "engine.errors"
            if private or behind_face:
                why = f"private {private}" if private else "a module behind a face"
                offenders.append(f"{_where(path, line)}: {module} {names} ({why})")
    assert offenders == [], "imports of engine internals:\n" + "\n".join(offenders)


def test_every_engine_package_has_a_face_with_all() -> None:
    missing = [
        str(init.relative_to(ROOT))
        for init in sorted(ENGINE.rglob("__init__.py"))
        if not any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in ast.parse(init.read_text()).body
        )
    ]
    assert missing == [], "package faces without __all__:\n" + "\n".join(missing)


# --- the packages: commands -> workers -> service -> search -> engine -------------------------

FLOORS = ("engine", "search", "service", "workers", "commands")
"""Bottom to top: a package may import those before it, never those after."""


def _roots(path: Path) -> set[str]:
    return {module.split(".")[0] for _, module, _ in _imports(path)}


def test_no_package_imports_one_above_it() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {package} imports {root}"
        for i, package in enumerate(FLOORS)
        for path in sorted((ROOT / package).rglob("*.py"))
        for root in sorted(_roots(path) & set(FLOORS[i + 1 :]))
    ]
    assert offenders == [], "imports pointing up:\n" + "\n".join(offenders)


def test_nothing_imports_the_command_line() -> None:
    folders = ("engine", "search", "service", "workers", "bench", "examples", "alembic")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in folders
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "commands" in _roots(path)
    ]
    assert offenders == []


# --- module size ---------------------------------------------------------------------------

MAX_LINES = 300


def test_a_module_over_300_lines_says_why_in_its_docstring() -> None:
    """House style: modules stay under ~300 lines; a longer one gives its reason (``Size:``)."""
    offenders = []
    for folder in FLOORS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text()
            doc = ast.get_docstring(ast.parse(text)) or ""
            if text.count("\n") > MAX_LINES and "Size:" not in doc:
                offenders.append(f"{path.relative_to(ROOT)}: {text.count(chr(10))} lines")
    assert offenders == [], "long modules without a reason:\n" + "\n".join(offenders)
