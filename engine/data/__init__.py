"""Level 0 of the engine: datasets, the batch they are evaluated at, and metrics.

:func:`load_dataset` reads an uploaded ``.npz`` / ``.safetensors`` file (arrays named
after the model's inputs, ``calib/`` for calibration, ``labels``) into a
:class:`Dataset` conformed to the model's input specs; :func:`fit_batch` picks the
batch a model is evaluated at and checks the move on the data; :func:`evaluate`
scores a model's outputs with one of :data:`METRICS`.

Modules: ``_dataset`` (splits, batching, validation), ``_files`` (reading the
arrays), ``_fit`` (evaluation batch), ``_metrics`` (accuracy, agreement, cosine,
SQNR, KL).
"""

from __future__ import annotations

from engine.data._dataset import (
    CALIB_PREFIX,
    LABELS,
    Batch,
    Dataset,
    Split,
    SplitName,
    default_calibration_samples,
    load_dataset,
)
from engine.data._files import MAX_ARRAYS, read_arrays
from engine.data._fit import ACTIVATION_BUDGET, MAX_EVALUATION_BATCH, evaluation_batch, fit_batch
from engine.data._metrics import (
    METRICS,
    MetricInfo,
    accuracy,
    agreement,
    cosine,
    evaluate,
    kl_divergence,
    sqnr,
)

__all__ = [
    "ACTIVATION_BUDGET",
    "CALIB_PREFIX",
    "LABELS",
    "MAX_ARRAYS",
    "MAX_EVALUATION_BATCH",
    "METRICS",
    "Batch",
    "Dataset",
    "MetricInfo",
    "Split",
    "SplitName",
    "accuracy",
    "agreement",
    "cosine",
    "default_calibration_samples",
    "evaluate",
    "evaluation_batch",
    "fit_batch",
    "kl_divergence",
    "load_dataset",
    "read_arrays",
    "sqnr",
]
