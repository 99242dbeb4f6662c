"""MPQ's engine: pure PyTorch + numpy, no HTTP, SQL or queues.

The engine is built in levels, each importing only the ones below it:

0. :mod:`engine.ir` (the model IR, op table, batch generalization) and
   :mod:`engine.data` (datasets, metrics); :mod:`engine.errors` for every level;
1. :mod:`engine.quant`: quantization primitives, plans, weight formats, observers;
2. :mod:`engine.transforms`: BN folding, applying a plan, calibration, bias
   correction, integer lowering (:mod:`engine.transforms.integer`);
3. :mod:`engine.io`: importers, the ``.mpq`` artifact, ONNX export, the sandbox;

and this module, the small public API on top (with the file-to-file pipeline,
:func:`quantize_file` / :func:`evaluate_file`); everything else is reached through
the face of its level::

    imported = engine.import_model("model.pt2")            # .pt2 / .onnx -> IR, safely
    qm = engine.apply(imported.ir, plan, calibration)      # simulated quantization
    engine.save_artifact(qm, "model.mpq")                  # the packed artifact
    model = engine.load_artifact("model.mpq").module()     # rebuilt from the file alone
    im = engine.lower_to_integer(qm)                       # integer-only execution
    engine.export_onnx(qm).save("model.onnx")              # QDQ ONNX for deployment
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine._pipeline import (
        EvalReport,
        QuantizeReport,
        evaluate_file,
        pick_metric,
        quantize_file,
    )
    from engine.io import load_artifact, save_artifact
    from engine.io.export import export_onnx
    from engine.io.importers import import_model
    from engine.quant import LayerFormat, QuantPlan
    from engine.transforms import QuantizedModel, apply, inventory
    from engine.transforms.integer import IntegerModel, lower_to_integer

_HOMES = {
    "engine._pipeline": (
        "EvalReport",
        "QuantizeReport",
        "evaluate_file",
        "pick_metric",
        "quantize_file",
    ),
    "engine.io": ("load_artifact", "save_artifact"),
    "engine.io.export": ("export_onnx",),
    "engine.io.importers": ("import_model",),
    "engine.quant": ("LayerFormat", "QuantPlan"),
    "engine.transforms": ("QuantizedModel", "apply", "inventory"),
    "engine.transforms.integer": ("IntegerModel", "lower_to_integer"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """The public API, imported on first use (PEP 562): ``import engine.errors`` -- all a
    client of the service needs -- does not load PyTorch."""
    if name not in _HOME:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "EvalReport",
    "IntegerModel",
    "LayerFormat",
    "QuantPlan",
    "QuantizeReport",
    "QuantizedModel",
    "apply",
    "evaluate_file",
    "export_onnx",
    "import_model",
    "inventory",
    "load_artifact",
    "lower_to_integer",
    "pick_metric",
    "quantize_file",
    "save_artifact",
]
