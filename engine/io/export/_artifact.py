"""Exporting a packed artifact (``model.mpq``) to ONNX, from the file alone.

:func:`engine.io.load_artifact` rebuilds the
:class:`~engine.transforms.QuantizedModel` -- integer codes, scales, codebooks and
outliers as stored -- which :func:`engine.io.export.export_onnx` writes out.
"""

from __future__ import annotations

from pathlib import Path

from engine.io._artifact import load_artifact
from engine.io.export._onnx import OnnxExport, export_onnx

__all__ = ["export_artifact_onnx"]


def export_artifact_onnx(path: Path, *, opset: int = 21) -> OnnxExport:
    """QDQ ONNX of the model in ``model.mpq`` (see :func:`engine.io.export.export_onnx`).

    Raises:
        CorruptFileError: not an artifact, or its tensors do not match its manifest.
        UnsupportedExportError: as :func:`engine.io.export.export_onnx`.
    """
    return export_onnx(load_artifact(Path(path)).quantized, opset=opset)
