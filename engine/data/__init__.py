"""Level 0 of the engine: datasets, the batch they are evaluated at, and metrics.

:func:`load_dataset` reads an uploaded ``.npz`` / ``.safetensors`` file (arrays named
after the model's inputs, ``calib/`` for calibration, ``labels``) into a
:class:`Dataset` conformed to the model's input specs; :func:`fit_batch` picks the
batch a model is evaluated at and checks the move on the data; :func:`evaluate`
scores a model's outputs with one of :data:`METRICS`.

Modules: ``_dataset`` (splits, batching, validation), ``_files`` (reading the
arrays), ``_fit`` (evaluation batch), ``_metrics`` (accuracy, agreement, top-5
agreement, KL, cosine, NMSE, SQNR).
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
from engine.data._files import MAX_ARRAYS, array_names, read_arrays
from engine.data._fit import ACTIVATION_BUDGET, MAX_EVALUATION_BATCH, evaluation_batch, fit_batch
from engine.data._metrics import (
    METRICS,
    TOP_K,
    MetricInfo,
    accuracy,
    agreement,
    check_metric,
    cosine,
    evaluate,
    kl_divergence,
    nmse,
    related_metrics,
    sqnr,
    top5,
)

__all__ = [
    "ACTIVATION_BUDGET",
    "CALIB_PREFIX",
    "LABELS",
    "MAX_ARRAYS",
    "MAX_EVALUATION_BATCH",
    "METRICS",
    "TOP_K",
    "Batch",
    "Dataset",
    "MetricInfo",
    "Split",
    "SplitName",
    "accuracy",
    "agreement",
    "array_names",
    "check_metric",
    "cosine",
    "default_calibration_samples",
    "evaluate",
    "evaluation_batch",
    "fit_batch",
    "kl_divergence",
    "load_dataset",
    "nmse",
    "read_arrays",
    "related_metrics",
    "sqnr",
    "top5",
]
