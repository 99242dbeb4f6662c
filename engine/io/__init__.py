"""Level 3 of the engine: model formats in and out.

- :mod:`engine.io.importers`: uploaded ``.pt2`` / ``.onnx`` files -> IR, safely;
- the ``.mpq`` artifact (:func:`save_artifact`, :func:`load_artifact`): bit-packed
  codes, scales and codebooks, from which the quantized model is rebuilt;
- :mod:`engine.io.export`: QDQ ONNX for deployment;
- the sandbox (:func:`run_isolated`) in which loaders that can run code from a
  file run, isolated by bubblewrap.

Imports levels 0 to 2.
"""

from __future__ import annotations

from engine.io._artifact import (
    ARTIFACT_VERSION,
    LoadedArtifact,
    load_artifact,
    predict_model_payload,
    predict_payload_bytes,
    save_artifact,
)
from engine.io._sandbox import (
    IsolatedResult,
    IsolationReport,
    Limits,
    check_isolation,
    isolation_available,
    run_isolated,
)

__all__ = [
    "ARTIFACT_VERSION",
    "IsolatedResult",
    "IsolationReport",
    "Limits",
    "LoadedArtifact",
    "check_isolation",
    "isolation_available",
    "load_artifact",
    "predict_model_payload",
    "predict_payload_bytes",
    "run_isolated",
    "save_artifact",
]
