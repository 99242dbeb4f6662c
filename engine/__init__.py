"""MPQ's engine: pure PyTorch + numpy, no HTTP, SQL or queues.

The small public API; everything else is reached through its module::

    imported = engine.import_model("model.pt2")            # .pt2 / .onnx -> IR, safely
    qm = engine.apply(imported.ir, plan, calibration)      # simulated quantization
    engine.save_artifact(qm, "model.mpq")                  # the packed artifact
    model = engine.load_artifact("model.mpq").module()     # rebuilt from the file alone
    im = engine.lower_to_integer(qm)                       # integer-only execution
    engine.export_onnx(qm).save("model.onnx")              # QDQ ONNX for deployment
"""

from __future__ import annotations

from engine.apply import QuantizedModel, apply
from engine.artifact import load_artifact, save_artifact
from engine.export import export_onnx
from engine.importers import import_model
from engine.integer import IntegerModel, lower_to_integer
from engine.inventory import inventory
from engine.plan import LayerFormat, QuantPlan

__all__ = [
    "IntegerModel",
    "LayerFormat",
    "QuantPlan",
    "QuantizedModel",
    "apply",
    "export_onnx",
    "import_model",
    "inventory",
    "load_artifact",
    "lower_to_integer",
    "save_artifact",
]
