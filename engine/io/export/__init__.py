"""ONNX export for deployment: QDQ models that ONNX Runtime runs.

::

    exported = engine.io.export.export_onnx(qm)             # a QuantizedModel -> QDQ ONNX
    exported.save("model.onnx"); exported.report         # how each weight was stored
    engine.io.export.export_float_onnx(ir)                  # the fp32 baseline
    engine.io.export.export_artifact_onnx("model.mpq")      # from the packed artifact alone

The encoder (:mod:`engine.io.export._proto`) writes the protobuf bytes itself: the
engine imports only the standard library, torch and numpy.
"""

from __future__ import annotations

from engine.io.export._artifact import export_artifact_onnx
from engine.io.export._onnx import (
    CONVERTERS,
    ExportReport,
    OnnxExport,
    QuantizedLayer,
    export_float_onnx,
    export_layers_onnx,
    export_onnx,
)
from engine.io.export._weights import WeightRecord

__all__ = [
    "CONVERTERS",
    "ExportReport",
    "OnnxExport",
    "QuantizedLayer",
    "WeightRecord",
    "export_artifact_onnx",
    "export_float_onnx",
    "export_layers_onnx",
    "export_onnx",
]
