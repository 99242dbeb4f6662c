"""Exports of the zoo's models, five ways, cached on disk for ``bench/zoo.py``.

Ways (the example batch is :data:`BATCH`; every way names its inputs after the
forward's arguments and its output ``output``):

* ``pt2-static``: ``torch.export.export`` + ``torch.export.save``;
* ``pt2-dynamic``: the same with ``dynamic_shapes`` = ``Dim("batch")`` on dim 0 of every input;
* ``onnx-static``: ``torch.onnx.export(..., dynamo=False, opset_version=17)``;
* ``onnx-dynamic``: the same with ``dynamic_axes`` = ``{0: "batch"}`` on every input and the output;
* ``onnx-dynamo``: ``torch.onnx.export(..., dynamo=True)`` (needs ``onnxscript``), static.

A model's exports live in ``OUT/<model>/<way>.pt2|.onnx`` with ``<way>.json``
beside each: the op counts of the exported graph (ATen targets for ``.pt2``,
``op_type`` for ONNX), or the exporter's error. ``OUT/<model>/meta.json`` holds
the torch and transformers versions, the model's description and the sha256 of
``_zoo_build.py`` + ``_zoo_models.py``; when any changes the model's exports are made again,
otherwise the cached files are used.
"""

from __future__ import annotations

import hashlib
import json
import operator
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _zoo_build
import _zoo_models
import torch
from _zoo_build import ZooModel
from torch import nn

BATCH = 2
OPSET = 17
WAYS = ("pt2-static", "pt2-dynamic", "onnx-static", "onnx-dynamic", "onnx-dynamo")


@dataclass(frozen=True)
class Export:
    """One export of one model: the file, or why the exporter failed.

    Attributes:
        path: the exported file, or None when the export failed.
        ops: op name -> node count in the exported graph (empty when it failed).
        error: the exporter's error (``TypeName: message``), or None.
        cached: the file was already on disk.
    """

    path: Path | None
    ops: dict[str, int]
    error: str | None
    cached: bool


def suffix(way: str) -> str:
    return ".pt2" if way.startswith("pt2") else ".onnx"


def prepare_dir(out: Path, model: ZooModel, *, fresh: bool) -> Path:
    """``out/<model>``, emptied when ``fresh`` or when the versions or description changed."""
    import transformers

    # a changed zoo makes its exports again
    zoo_code = b"".join(Path(str(m.__file__)).read_bytes() for m in (_zoo_build, _zoo_models))
    meta = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "source": model.source,
        "batch": BATCH,
        "zoo_sha256": hashlib.sha256(zoo_code).hexdigest(),
    }
    folder = out / model.name
    meta_path = folder / "meta.json"
    stale = not meta_path.is_file() or json.loads(meta_path.read_text()) != meta
    if folder.exists() and (fresh or stale):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=1))
    return folder


def cached_export(folder: Path, way: str) -> Export | None:
    """The export of ``way`` already in ``folder``, or None."""
    record = folder / f"{way}.json"
    if not record.is_file():
        return None
    info = json.loads(record.read_text())
    path = folder / f"{way}{suffix(way)}"
    if info.get("error") is None and not path.is_file():
        return None
    return Export(path if info.get("error") is None else None, info["ops"], info["error"], True)


def export(folder: Path, way: str, module: nn.Module, model: ZooModel) -> Export:
    """Export ``module`` as ``way`` into ``folder``; exporter errors are recorded, not raised."""
    path = folder / f"{way}{suffix(way)}"
    args = model.example(BATCH)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            ops = _EXPORTERS[way](module, args, model.inputs, path)
        error = None
    except Exception as exc:  # any exporter failure is data for the report
        path.unlink(missing_ok=True)
        ops, error = {}, f"{type(exc).__name__}: {_first_line(exc)}"
    (folder / f"{way}.json").write_text(json.dumps({"ops": ops, "error": error}, indent=1))
    return Export(None if error else path, ops, error, False)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [""])[0][:400]


def _pt2(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    names: tuple[str, ...],
    path: Path,
    *,
    dynamic: bool = False,
) -> dict[str, int]:
    shapes: dict[str, Any] | None = None
    if dynamic:
        batch = torch.export.Dim("batch")
        shapes = {name: {0: batch} for name in names}
    program = torch.export.export(module, args, dynamic_shapes=shapes)
    torch.export.save(program, path)
    counts: Counter[str] = Counter(
        "getitem" if n.target is operator.getitem else str(n.target)
        for n in program.graph.nodes
        if n.op == "call_function"
    )
    return dict(sorted(counts.items()))


def _onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    names: tuple[str, ...],
    path: Path,
    *,
    dynamic: bool = False,
    dynamo: bool = False,
) -> dict[str, int]:
    axes = {name: {0: "batch"} for name in (*names, "output")} if dynamic else None
    if dynamo:
        program = torch.onnx.export(
            module,
            args,
            input_names=list(names),
            output_names=["output"],
            dynamo=True,
            verbose=False,
        )
        assert program is not None
        program.save(str(path))
    else:
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=list(names),
            output_names=["output"],
            opset_version=OPSET,
            dynamic_axes=axes,
        )
    return onnx_ops(path)


def onnx_ops(path: Path) -> dict[str, int]:
    """``op_type`` -> count in an ONNX file's main graph (domain-qualified if not ai.onnx)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    counts = Counter(
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in graph.node
    )
    return dict(sorted(counts.items()))


_EXPORTERS = {
    "pt2-static": lambda m, a, n, p: _pt2(m, a, n, p),
    "pt2-dynamic": lambda m, a, n, p: _pt2(m, a, n, p, dynamic=True),
    "onnx-static": lambda m, a, n, p: _onnx(m, a, n, p),
    "onnx-dynamic": lambda m, a, n, p: _onnx(m, a, n, p, dynamic=True),
    "onnx-dynamo": lambda m, a, n, p: _onnx(m, a, n, p, dynamo=True),
}
