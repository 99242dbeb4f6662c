"""Level 2 of the engine: model transforms.

BN folding (``_fold``: a pure weights-level fold and a copying model pass), the
layer inventory (``_inventory``), calibration statistics (``_calibrate``), bias
correction (``_bias_correction``), applying a :class:`~engine.quant.QuantPlan`
(``_apply``: simulated quantization, a :class:`QuantizedModel`), a runnable model
that gives the same outputs at any thread count (``_exact``) and, in
:mod:`engine.transforms.integer`, lowering a quantized model to integer-only
execution. Imports only levels 0 and 1.
"""

from __future__ import annotations

from engine.transforms._apply import (
    FAKE_QUANT_OP,
    QuantizedModel,
    WeightCache,
    apply,
    weight_is_transposed,
)
from engine.transforms._bias_correction import bias_operand, bias_shift, corrected_bias
from engine.transforms._calibrate import LayerStats, activation_index, calibrate
from engine.transforms._exact import deterministic_module, exact_bound, layer_in_float64
from engine.transforms._fold import (
    BN_OP,
    FOLD_PATTERNS,
    FoldReport,
    fold_batch_norm,
    fold_bn_weights,
)
from engine.transforms._inventory import Inventory, LayerInfo, inventory

__all__ = [
    "BN_OP",
    "FAKE_QUANT_OP",
    "FOLD_PATTERNS",
    "FoldReport",
    "Inventory",
    "LayerInfo",
    "LayerStats",
    "QuantizedModel",
    "WeightCache",
    "activation_index",
    "apply",
    "bias_operand",
    "bias_shift",
    "calibrate",
    "corrected_bias",
    "deterministic_module",
    "exact_bound",
    "fold_batch_norm",
    "fold_bn_weights",
    "inventory",
    "layer_in_float64",
    "weight_is_transposed",
]
