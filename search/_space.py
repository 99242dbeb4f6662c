"""The search space: per layer, a weight format x rounding x activation bits.

A *choice* is one :class:`~engine.quant.LayerFormat`, named by a short key such
as ``int4/gptq/a8`` or ``cb16/nearest/a8`` (``fp16`` takes no rounding:
``fp16/-/a8``). Keys are Optuna's categorical values, so a trial's parameters
are plain strings and a plan is rebuilt from them exactly.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidPlanError
from engine.quant import LayerFormat, QuantPlan, weight_format

__all__ = ["DEFAULT_FORMATS", "SearchSpace", "choice_key", "parse_choice"]

DEFAULT_FORMATS = (
    "int2",
    "int3",
    "int4",
    "int5",
    "int6",
    "int8",
    "cb4",
    "cb16",
    "cb256",
    "fp16",
)
DEFAULT_ROUNDINGS = ("nearest", "gptq")
DEFAULT_ACTIVATIONS = ("a8",)


def _fits(weight: str, inputs: int) -> bool:
    """Whether ``weight``'s groups split ``inputs`` into two or more whole groups."""
    group = weight_format(weight).group_size
    return group is None or (inputs % group == 0 and inputs > group)


def choice_key(fmt: LayerFormat) -> str:
    """``weight/rounding/activation`` (rounding ``-`` for float formats)."""
    rounding = "-" if fmt.is_float else fmt.rounding
    return f"{fmt.weight}/{rounding}/{fmt.activation}"


def parse_choice(key: str, *, scale: str = "mse") -> LayerFormat:
    """The :class:`LayerFormat` a choice key names (uniform formats use ``scale``)."""
    weight, rounding, activation = key.split("/")
    if rounding == "-":
        return LayerFormat(weight, activation=activation)
    return LayerFormat(weight, activation=activation, rounding=rounding, scale=scale)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SearchSpace:
    """Formats, roundings and activation formats to search, and layers pinned by pattern.

    Attributes:
        formats: weight formats (``int4``, ``int4g64``, ``cb16``, ``fp16``, ...).
        roundings: ``nearest`` and/or ``gptq`` (float formats ignore it).
        activations: activation formats (``a8``, ``a16``, ``float``, ...).
        pins: ``fnmatch`` pattern -> choice key; a layer matching a pattern is
            fixed to that choice (first match wins).
        scale: scale rule of uniform formats (``mse`` or ``max``).
    """

    formats: tuple[str, ...] = DEFAULT_FORMATS
    roundings: tuple[str, ...] = DEFAULT_ROUNDINGS
    activations: tuple[str, ...] = DEFAULT_ACTIVATIONS
    pins: Mapping[str, str] = field(default_factory=dict)
    scale: str = "mse"

    def __post_init__(self) -> None:
        if not self.formats or not self.roundings or not self.activations:
            raise InvalidPlanError(
                "the search space needs at least one format, rounding and activation"
            )
        for key in self.all_choices():
            parse_choice(key, scale=self.scale)  # validates every combination
        for pattern, key in self.pins.items():
            parse_choice(key, scale=self.scale)
            if not pattern:
                raise InvalidPlanError("a pin needs a layer name pattern")

    def all_choices(self) -> list[str]:
        """Every choice key of the space, in a stable order (duplicates removed)."""
        out: list[str] = []
        for w in self.formats:
            for a in self.activations:
                for r in ("-",) if weight_format(w).is_float else self.roundings:
                    key = f"{w}/{r}/{a}"
                    if key not in out:
                        out.append(key)
        return out

    def choices(
        self, layer: str, *, embedding: bool = False, inputs: int | None = None
    ) -> list[str]:
        """The choices of one layer: its pin, or the whole space.

        Embeddings round to nearest (a lookup table has no input Hessian), so
        their ``gptq`` choices would duplicate ``nearest`` ones and are dropped.
        With ``inputs`` (the layer's inputs per output channel), grouped formats
        whose group size does not divide them, or that would make one group of
        them (the per-channel format, at more bytes), are dropped.

        Raises:
            InvalidPlanError: no format of the space fits a layer of ``inputs``.
        """
        for pattern, key in self.pins.items():
            if fnmatch.fnmatchcase(layer, pattern):
                return [key]
        keys = self.all_choices()
        if embedding:
            keys = [k for k in keys if "/gptq/" not in k] or keys
        if inputs is not None:
            fits = [k for k in keys if _fits(k.split("/")[0], inputs)]
            if not fits:
                raise InvalidPlanError(
                    f"layer {layer!r} has {inputs} inputs per output channel, which the group "
                    f"sizes of every format of the search space fail to divide in two or more "
                    f"groups; add a per-channel format (e.g. int4) to the space"
                )
            keys = fits
        return keys

    def plan(self, choices: Mapping[str, str], *, calibration: str = "minmax") -> QuantPlan:
        """The plan of one choice per layer."""
        layers = {name: parse_choice(key, scale=self.scale) for name, key in choices.items()}
        return QuantPlan(layers, calibration=calibration)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, Any]:
        return {
            "formats": list(self.formats),
            "roundings": list(self.roundings),
            "activations": list(self.activations),
            "pins": dict(self.pins),
            "scale": self.scale,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SearchSpace:
        return cls(
            tuple(d["formats"]),
            tuple(d["roundings"]),
            tuple(d["activations"]),
            dict(d.get("pins", {})),
            d.get("scale", "mse"),
        )

    @classmethod
    def parse(cls, formats: str | None, *, pins: Sequence[str] = (), **kw: Any) -> SearchSpace:
        """From the CLI: ``"int2,int4,cb16"`` and pins like ``"classifier=int8/nearest/a8"``."""
        fmts = (
            tuple(f.strip() for f in formats.split(",") if f.strip())
            if formats
            else DEFAULT_FORMATS
        )
        pin_map: dict[str, str] = {}
        for p in pins:
            pattern, sep, key = p.partition("=")
            if not sep:
                raise InvalidPlanError(
                    f"pin {p!r} must look like PATTERN=FORMAT/ROUNDING/ACTIVATION"
                )
            pin_map[pattern] = key if key.count("/") == 2 else choice_key(LayerFormat(key))
        return cls(fmts, pins=pin_map, **kw)
