"""Level 0 of the engine: datasets, the batch they are evaluated at, and metrics.

:func:`load_dataset` reads an uploaded ``.npz`` / ``.safetensors`` file (arrays named
after the model's inputs, ``calib/`` for calibration, ``labels``) into a
:class:`Dataset` conformed to the model's input specs; :func:`fit_batch` picks the
batch a model is evaluated at and checks the move on the data; :func:`evaluate`
scores a model's outputs with one of :data:`METRICS`.

Modules: ``_dataset`` (splits, batching, validation), ``_files`` (reading the
arrays), ``_fit`` (evaluation batch), ``_holdout`` (the search / held-out split of the
evaluation samples), ``_intervals`` (confidence intervals of a metric), ``_metrics``
(accuracy, agreement, top-5 agreement, KL, cosine, NMSE, SQNR).
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
from engine.data._holdout import MIN_SIDE, HoldoutSplit, holdout_indices, holdout_split
from engine.data._intervals import (
    BOOTSTRAP_RESAMPLES,
    CI_LEVEL,
    bootstrap_interval,
    metric_interval,
    wilson_interval,
)
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
    "BOOTSTRAP_RESAMPLES",
    "CALIB_PREFIX",
    "CI_LEVEL",
    "LABELS",
    "MAX_ARRAYS",
    "MAX_EVALUATION_BATCH",
    "METRICS",
    "MIN_SIDE",
    "TOP_K",
    "Batch",
    "Dataset",
    "HoldoutSplit",
    "MetricInfo",
    "Split",
    "SplitName",
    "accuracy",
    "agreement",
    "array_names",
    "bootstrap_interval",
    "check_metric",
    "cosine",
    "default_calibration_samples",
    "evaluate",
    "evaluation_batch",
    "fit_batch",
    "holdout_indices",
    "holdout_split",
    "kl_divergence",
    "load_dataset",
    "metric_interval",
    "nmse",
    "read_arrays",
    "related_metrics",
    "sqnr",
    "top5",
    "wilson_interval",
]
