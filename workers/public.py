"""What a job shows its user: the model and dataset by their names, never a server path.

A worker searches on files of the blob store (``/var/mpq/blobs/ir/<sha256>.ir``) and
writes into a temporary directory; the search's result document and the engine's error
messages name those paths, which mean nothing to the user and tell an attacker where
the service keeps its files. Before a result or a failure message is stored (or
``result.json`` committed), :func:`without_paths` rewrites every string in it: the
job's model and data files become what the user calls them (``model 3 ('digits' v1)``),
the sensitivity cache ``the sensitivity cache``, and any other path under the service's
directories ``a stored file``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Labels", "rewrite_result_file", "without_paths"]

STORED_FILE = "a stored file"


@dataclass(frozen=True)
class Labels:
    """Server paths and what to say instead: ``names`` (path -> label), and ``roots``.

    Attributes:
        names: exact paths (the model's IR, the data, the cache) and their labels.
        roots: directories whose other paths are all called :data:`STORED_FILE`.
    """

    names: Mapping[str, str]
    roots: Sequence[str]

    def text(self, value: str) -> str:
        """``value`` with every known path named and every other stored path hidden."""
        for path in sorted(self.names, key=len, reverse=True):  # longest first
            if path:
                value = value.replace(path, self.names[path])
        for root in sorted(self.roots, key=len, reverse=True):
            if root and root != "/":
                value = re.sub(re.escape(root) + r"[^\s'\",;)\]]*", STORED_FILE, value)
        return value


def without_paths(doc: Any, labels: Labels) -> Any:
    """A copy of JSON ``doc`` with :meth:`Labels.text` applied to every string (keys too)."""
    if isinstance(doc, str):
        return labels.text(doc)
    if isinstance(doc, Mapping):
        return {labels.text(str(k)): without_paths(v, labels) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [without_paths(v, labels) for v in doc]
    return doc


def rewrite_result_file(path: Path, labels: Labels) -> None:
    """Rewrite the ``result.json`` at ``path`` (if any) without server paths, in place."""
    if not path.is_file():
        return
    doc = json.loads(path.read_text())
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(without_paths(doc, labels), indent=2))
    tmp.replace(path)
