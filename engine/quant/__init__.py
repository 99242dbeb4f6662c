"""Level 1 of the engine: quantization primitives, plans, weight formats, observers.

Pure math on tensors (``_packing``: bit packing; ``_affine`` / ``_codebook``: the
``choose_qparams_* / quantize_* / dequantize_* / fake_quantize_*`` families;
``_kmeans``: 1-D k-means for codebooks; ``_gptq``: GPTQ rounding), the plan as data
(``_plan``: :class:`LayerFormat`, :class:`QuantPlan`), one layer's weight quantized
to its format (``_weights``), and activation-range observers (``_observe``).
Imports only level 0 (:mod:`engine.ir`, :mod:`engine.errors`).
"""

from __future__ import annotations

from engine.quant._affine import (
    AffineQParams,
    choose_qparams_affine,
    dequantize_affine,
    fake_quantize_affine,
    quantize_affine,
    signed_range,
    unsigned_range,
)
from engine.quant._codebook import (
    CodebookQParams,
    choose_qparams_codebook,
    dequantize_codebook,
    fake_quantize_codebook,
    quantize_codebook,
)
from engine.quant._gptq import QuantizeColumn, gptq_quantize, hessian_from_inputs
from engine.quant._kmeans import kmeans_1d, linear_init
from engine.quant._observe import Ranges, observe_ranges
from engine.quant._packing import pack_bits, packed_nbytes, unpack_bits
from engine.quant._plan import (
    PLAN_VERSION,
    Calibration,
    LayerFormat,
    QuantPlan,
    Rounding,
    ScaleMethod,
)
from engine.quant._scheme_codebook import CODEBOOK_BITS
from engine.quant._weights import QuantizedWeight, quantize_weight, quantize_weights
from engine.quant.formats import (
    CodeScheme,
    IntWeight,
    OnnxGraph,
    OnnxWeight,
    Quantized,
    WeightFormat,
    WeightScheme,
    known_formats,
    register_weight_scheme,
    scheme_for,
    scheme_for_qparams,
    stored_parts,
    unregister_weight_scheme,
    weight_format,
    weight_scheme,
    weight_schemes,
)

__all__ = [
    "CODEBOOK_BITS",
    "PLAN_VERSION",
    "AffineQParams",
    "Calibration",
    "CodeScheme",
    "CodebookQParams",
    "IntWeight",
    "LayerFormat",
    "OnnxGraph",
    "OnnxWeight",
    "QuantPlan",
    "QuantizeColumn",
    "Quantized",
    "QuantizedWeight",
    "Ranges",
    "Rounding",
    "ScaleMethod",
    "WeightFormat",
    "WeightScheme",
    "choose_qparams_affine",
    "choose_qparams_codebook",
    "dequantize_affine",
    "dequantize_codebook",
    "fake_quantize_affine",
    "fake_quantize_codebook",
    "gptq_quantize",
    "hessian_from_inputs",
    "kmeans_1d",
    "known_formats",
    "linear_init",
    "observe_ranges",
    "pack_bits",
    "packed_nbytes",
    "quantize_affine",
    "quantize_codebook",
    "quantize_weight",
    "quantize_weights",
    "register_weight_scheme",
    "scheme_for",
    "scheme_for_qparams",
    "signed_range",
    "stored_parts",
    "unpack_bits",
    "unregister_weight_scheme",
    "unsigned_range",
    "weight_format",
    "weight_scheme",
    "weight_schemes",
]
