"""A quantization plan: per layer, the numeric format of its weights and input activation.

Plans are data: frozen dataclasses that validate themselves, carry a
``version`` and round-trip through JSON, so the same object is stored in SQL,
sent in Celery messages and passed to the engine.

Weight formats (``LayerFormat.weight``):

- ``int{b}`` for b in 2..8 and 16: uniform symmetric, one scale per output
  channel; ``int{b}g{G}`` with G in {32, 64, 128}: one scale per group of G
  consecutive inputs of each output channel;
- ``cb{K}`` for K in {2, 4, ..., 256}: a k-means codebook of K values per
  layer, ``log2(K)``-bit indices;
- ``fp16`` / ``fp32``: not quantized.

Format strings are read by the weight-format registry
(:func:`engine.quant.formats.weight_format`); :attr:`LayerFormat.spec` is the
parsed format, and the scheme that owns it does everything format-specific.

Activation formats (``LayerFormat.activation``): ``a4``, ``a8``, ``a16``
(asymmetric, per tensor, calibrated) or ``float``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from engine.errors import InvalidPlanError
from engine.quant.formats import WeightFormat, weight_format

__all__ = ["PLAN_VERSION", "LayerFormat", "QuantPlan"]

PLAN_VERSION = 1

Rounding = Literal["nearest", "gptq"]
ScaleMethod = Literal["max", "mse"]
Calibration = Literal["minmax", "percentile", "mse"]

_ACTIVATIONS = {"a4": 4, "a8": 8, "a16": 16, "float": None}


@dataclass(frozen=True)
class LayerFormat:
    """How one layer is quantized.

    Attributes:
        weight: the weight format (see the module docstring).
        activation: the format of the activation entering the layer.
        rounding: ``nearest``, or ``gptq`` (error-compensating, needs calibration data).
        scale: ``max`` or ``mse`` (clipping-ratio search) for uniform weights.
        outliers: how many largest-magnitude weights are kept exactly (fp16).
        bias_correction: subtract the mean output shift the weight rounding causes,
            ``(Q - W) E[x]`` over the calibration inputs, from the layer's stored bias
            (:mod:`engine.transforms._bias_correction`); layers without a bias are left as they are.
    """

    weight: str = "int8"
    activation: str = "a8"
    rounding: Rounding = "nearest"
    scale: ScaleMethod = "max"
    outliers: int = 0
    bias_correction: bool = False

    def __post_init__(self) -> None:
        spec = weight_format(self.weight)
        if self.activation not in _ACTIVATIONS:
            raise InvalidPlanError(
                f"unknown activation format {self.activation!r}; use a4, a8, a16 or float"
            )
        if self.rounding not in ("nearest", "gptq"):
            raise InvalidPlanError(f"rounding must be 'nearest' or 'gptq', not {self.rounding!r}")
        if self.scale not in ("max", "mse"):
            raise InvalidPlanError(f"scale must be 'max' or 'mse', not {self.scale!r}")
        if not isinstance(self.outliers, int) or self.outliers < 0:
            raise InvalidPlanError(f"outliers must be a non-negative int, not {self.outliers!r}")
        if not isinstance(self.bias_correction, bool):
            raise InvalidPlanError(
                f"bias_correction must be true or false, not {self.bias_correction!r}"
            )
        if spec.is_float and (self.rounding != "nearest" or self.outliers or self.bias_correction):
            raise InvalidPlanError(
                f"{self.weight} weights take no rounding method, outliers or bias correction"
            )

    @property
    def spec(self) -> WeightFormat:
        """The parsed weight format (its scheme, bits, group size, codebook size)."""
        return weight_format(self.weight)

    @property
    def is_float(self) -> bool:
        """True for weights that stay float (``fp16``/``fp32``)."""
        return self.spec.is_float

    @property
    def bits(self) -> int:
        """Bits per stored weight code (16 or 32 for float formats)."""
        return self.spec.bits

    @property
    def group_size(self) -> int | None:
        """Inputs per scale for grouped formats, else None (per channel)."""
        return self.spec.group_size

    @property
    def codebook_size(self) -> int | None:
        """K for ``cb{K}``, else None."""
        return self.spec.codebook_size

    @property
    def activation_bits(self) -> int | None:
        """Bits of the input activation, None when it stays float."""
        return _ACTIVATIONS[self.activation]


@dataclass(frozen=True)
class QuantPlan:
    """Layer name -> :class:`LayerFormat`, plus plan-wide activation calibration."""

    layers: Mapping[str, LayerFormat] = field(default_factory=dict)
    calibration: Calibration = "minmax"
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        if self.version != PLAN_VERSION:
            raise InvalidPlanError(
                f"plan version {self.version!r}; this MPQ reads version {PLAN_VERSION}"
            )
        if self.calibration not in ("minmax", "percentile", "mse"):
            raise InvalidPlanError(
                f"calibration must be minmax, percentile or mse, not {self.calibration!r}"
            )
        for name, fmt in self.layers.items():
            if not isinstance(name, str) or not name:
                raise InvalidPlanError(f"layer names must be non-empty strings, not {name!r}")
            if not isinstance(fmt, LayerFormat):
                raise InvalidPlanError(f"layer {name!r} needs a LayerFormat, not {fmt!r}")

    @classmethod
    def uniform(cls, layers: Iterable[str], fmt: LayerFormat, **kw: Any) -> QuantPlan:
        """The same format for every named layer."""
        return cls(layers={name: fmt for name in layers}, **kw)

    def check_layers(self, known: Iterable[str]) -> None:
        """Raise unless the plan names exactly the model's quantizable layers."""
        known_set = set(known)
        missing, extra = sorted(known_set - set(self.layers)), sorted(set(self.layers) - known_set)
        if missing or extra:
            raise InvalidPlanError(
                f"the plan does not match the model: missing layers {missing[:10]}, "
                f"unknown layers {extra[:10]}. `mpq inspect MODEL` lists the layer names."
            )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; :meth:`from_json` inverts it."""
        return {
            "version": self.version,
            "calibration": self.calibration,
            "layers": {name: asdict(fmt) for name, fmt in self.layers.items()},
        }

    def dumps(self) -> str:
        """Canonical JSON text (sorted keys): equal plans give equal strings."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, doc: Any) -> QuantPlan:
        """Parse and validate a plan from a JSON-decoded value."""
        if not isinstance(doc, dict) or not isinstance(doc.get("layers"), dict):
            raise InvalidPlanError("a plan is a JSON object with a 'layers' object")
        unknown = set(doc) - {"version", "calibration", "layers"}
        if unknown:
            raise InvalidPlanError(f"unknown plan fields {sorted(unknown)}")
        layers: dict[str, LayerFormat] = {}
        for name, fmt in doc["layers"].items():
            if not isinstance(fmt, dict):
                raise InvalidPlanError(f"layer {name!r}: expected an object, got {fmt!r}")
            bad = set(fmt) - set(LayerFormat.__dataclass_fields__)
            if bad:
                raise InvalidPlanError(f"layer {name!r}: unknown fields {sorted(bad)}")
            layers[name] = LayerFormat(**fmt)
        return cls(
            layers=layers,
            calibration=doc.get("calibration", "minmax"),
            version=doc.get("version", PLAN_VERSION),
        )
