"""An IR on disk: one safetensors file, the graph as JSON in its header metadata.

The tensors are the file's tensors; the graph (:meth:`IRModel.graph_json`) is stored
under the metadata key ``"mpq_ir"``, with ``"format": "mpq-ir"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import CorruptFileError, InvalidIRError
from engine.ir._model import IRModel
from engine.ir._safetensors import read_safetensors, write_safetensors

__all__ = ["is_ir_file", "load_ir", "save_ir"]


def save_ir(model: IRModel, path: Path) -> int:
    """Write ``model`` as one safetensors file; return its size in bytes."""
    meta = {"format": "mpq-ir", "mpq_ir": json.dumps(model.graph_json(), separators=(",", ":"))}
    return write_safetensors(Path(path), model.tensors, metadata=meta)


def is_ir_file(path: Path) -> bool:
    """Whether ``path`` is an IR file of :func:`save_ir` (reads only its header).

    A safetensors file starts with an 8-byte little-endian header length, then that
    many bytes of JSON whose ``__metadata__.format`` :func:`save_ir` sets to ``mpq-ir``.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        size = int.from_bytes(head, "little")
        if not 2 <= size <= 100_000_000:
            return False
        try:
            header = json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(meta, dict) and meta.get("format") == "mpq-ir"


def load_ir(path: Path) -> IRModel:
    """Read and validate an IR file written by :func:`save_ir`.

    Raises:
        CorruptFileError: not a readable safetensors file or no IR in its header.
        InvalidIRError / UnsupportedOpsError: the graph breaks the IR's rules.
    """
    tensors, meta = read_safetensors(Path(path))
    if meta.get("format") != "mpq-ir" or "mpq_ir" not in meta:
        raise CorruptFileError(f"{Path(path).name!r} is a safetensors file without an MPQ IR")
    try:
        graph = json.loads(meta["mpq_ir"])
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"the IR graph in {Path(path).name!r} is not JSON: {exc}") from None
    if not isinstance(graph, dict):
        raise InvalidIRError("the IR graph must be a JSON object")
    return IRModel.from_json(graph, tensors)
