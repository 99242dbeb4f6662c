"""Real English sentences that ship offline: package descriptions in the venv.

Sentences come from the long descriptions (the body after the headers) of the
``*.dist-info/METADATA`` files in the site-packages directory of the running
interpreter, and from the module, class and function docstrings of the
standard library's top-level ``*.py`` files. Markup lines (code, tables,
headings, links, directives) are dropped, the rest is split at sentence ends;
sentences of 40-200 characters that start with a capital letter, end with
``.``, ``!`` or ``?`` and are mostly letters and spaces are kept, deduplicated
and sorted, then a fixed seeded sample is drawn. The result depends only on
the installed packages and Python version.
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
import sysconfig
from pathlib import Path

__all__ = ["sentences"]

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_MARKUP = re.compile(r"^\s*([#=\-~*`|>+:.]|\d+\.|\[|!\[|<|\{|\$|>>>)")
_INLINE = re.compile(r"[`*_\[\]<>{}|\\#=@/]|https?:")


def _description(path: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    _, sep, body = text.partition("\n\n")
    return body if sep else ""


def _candidates(body: str) -> list[str]:
    lines: list[str] = []
    in_fence = False
    for raw in body.splitlines():
        if raw.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence or raw.startswith(("    ", "\t")) or _MARKUP.match(raw):
            lines.append("")  # paragraph break
            continue
        lines.append(raw.strip())
    paragraphs = " ".join(line if line else "\n" for line in lines).split("\n")
    out: list[str] = []
    for para in paragraphs:
        out.extend(s.strip() for s in _SPLIT.split(" ".join(para.split())))
    return out


def _keep(s: str) -> bool:
    if not 40 <= len(s) <= 200 or not s[0].isupper() or s[-1] not in ".!?":
        return False
    if _INLINE.search(s) or ("(" in s and ")" not in s):
        return False
    letters = sum(c.isalpha() or c == " " for c in s)
    return letters / len(s) >= 0.9 and len(s.split()) >= 6


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, _DOC_NODES))]
    return [d for n in nodes if (d := ast.get_docstring(n))]


_DOC_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def all_sentences() -> list[str]:
    """Every kept sentence, deduplicated and sorted."""
    paths = sysconfig.get_paths()
    texts = [_description(p) for p in sorted(Path(paths["purelib"]).glob("*.dist-info/METADATA"))]
    for py in sorted(Path(paths["stdlib"]).glob("*.py")):
        texts.extend(_docstrings(py))
    found: set[str] = set()
    for text in texts:
        found.update(s for s in _candidates(text) if _keep(s))
    return sorted(found)


def sentences(n: int, *, seed: int = 0) -> list[str]:
    """A fixed seeded sample of ``n`` sentences (raises if fewer are available)."""
    pool = all_sentences()
    if len(pool) < n:
        raise SystemExit(f"only {len(pool)} sentences found in package metadata, need {n}")
    return random.Random(seed).sample(pool, n)


def digest(items: list[str]) -> str:
    """Short hash of a sentence list, to tell runs on different installs apart."""
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:12]
