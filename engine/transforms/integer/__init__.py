"""Integer-only execution of quantized models (Jacob et al. 2018; HAWQ-V3).

``lower_to_integer(quantized_model)`` returns an :class:`IntegerModel` whose
quantized layers, adds, pools and reshapes compute on integer codes with int32
accumulators (held exactly in int64/float64) and dyadic requantization;
operators without an integer kernel (GELU, softmax, LayerNorm, ...) run as
float islands named in its :class:`IntegerReport`.
"""

from __future__ import annotations

from engine.transforms.integer._dyadic import Dyadic, QSpec, dyadic, qspec_for_range, requantize
from engine.transforms.integer._kernels import QTensor
from engine.transforms.integer._model import (
    ROUNDING_RULE,
    IntegerModel,
    IntegerReport,
    LayerReport,
    lower_to_integer,
)

__all__ = [
    "ROUNDING_RULE",
    "Dyadic",
    "IntegerModel",
    "IntegerReport",
    "LayerReport",
    "QSpec",
    "QTensor",
    "dyadic",
    "lower_to_integer",
    "qspec_for_range",
    "requantize",
]
