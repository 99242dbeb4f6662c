"""One job spec: what a user asks of a search, the same from the CLI, the API and a schedule.

A :class:`JobSpec` is everything a user chooses about a search except which model and
data it runs on: the metric, the targets, the space (weight formats, roundings,
activation formats, pinned layers), the budget, the seed, the sampler and how many
trial runners share the work. ``mpq search`` builds one from its flags, ``POST /v1/jobs``
from its JSON body, and the job row stores :meth:`JobSpec.to_json` as is; workers read it
back with :meth:`JobSpec.from_json` and add the model and data to get a
:class:`~search.SearchConfig`.

Its JSON (version 1) is the job body of the REST API without the model and dataset ids::

    {"version": 1, "metric": "accuracy",
     "targets": {"max_drop": 0.01, "max_drop_rel": null, "min_metric": null,
                 "max_metric": null, "max_bytes": null, "min_ratio": null},
     "space": ["int4", "int8", "cb16"], "rounding": ["nearest", "gptq"],
     "activation": ["a8"], "pins": {"classifier": "int8"},
     "budget": {"trials": 100, "timeout_s": null},
     "seed": 0, "sampler": "tpe", "parallelism": 1, "holdout": 0.25,
     "sensitivity": "auto"}

Validation lives here once: every front door raises the same
:class:`~engine.errors.InvalidPlanError`. Messages name options by their place in this
JSON, in backticks (```targets.max_drop```, ```budget.trials```, ```seed```), the REST
API's words; ``mpq search`` rewrites each backticked name into its flag
(``commands.spec_flags``).

Every value is bounded, so nothing a client sends fails later in a worker: integers in
ranges the database and the samplers take (``seed`` to 2^32 - 1, the samplers' limit;
runner ``w`` seeds ``(seed + w) mod 2^32``), numbers finite, targets inside their
metric's range (:data:`search._targets.METRIC_RANGES`), ``min_ratio`` at most what the
space's smallest format can give (:func:`max_ratio`), lists de-duplicated in order and
capped (:data:`MAX_ENTRIES`, :data:`MAX_PINS`).

Size: one file (over 300 lines): the spec, its JSON both ways and every rule on its
values, so the three front doors cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from engine.data import METRICS as _METRIC_INFO
from engine.errors import InvalidPlanError
from engine.quant import weight_format
from search._config import DEFAULT_HOLDOUT, SAMPLERS, SearchConfig, check_holdout
from search._sensitivity import METHODS as SENSITIVITY_METHODS
from search._space import (
    DEFAULT_ACTIVATIONS,
    DEFAULT_ROUNDINGS,
    SearchSpace,
)
from search._targets import Targets, parse_bytes

__all__ = [
    "FLOAT_BITS",
    "MAX_ENTRIES",
    "MAX_PARALLELISM",
    "MAX_PINS",
    "MAX_SEED",
    "MAX_TIMEOUT_S",
    "MAX_TRIALS",
    "METRICS",
    "SPEC_VERSION",
    "JobSpec",
    "max_ratio",
]

SPEC_VERSION = 1
MAX_SEED = 2**32 - 1
"""The largest seed: Optuna's samplers (numpy's ``RandomState``) take 0 to 2^32 - 1."""
MAX_TRIALS = 1_000_000
"""The largest trial budget a spec may ask for (a service caps it lower: ``max_trials``)."""
MAX_PARALLELISM = 1024
"""The most trial runners a spec may ask for (a service caps it: ``max_parallelism``)."""
MAX_TIMEOUT_S = 30 * 24 * 3600.0
"""The longest wall-clock budget, 30 days."""
MAX_ENTRIES = 32
"""The most distinct entries of ``space``, ``rounding`` or ``activation``."""
MAX_PINS = 256
"""The most pins, and the longest pin pattern (characters)."""
FLOAT_BITS = 32
"""Bits of a float model's weights, what ``min_ratio`` compares against."""
METRICS = tuple(_METRIC_INFO)  # every metric of engine.data can be searched on
_ROUNDINGS = ("nearest", "gptq")
_METRIC_TARGETS = ("max_drop", "max_drop_rel", "min_metric", "max_metric")
_SIZE_TARGETS = ("max_bytes", "min_ratio")
_NUMBER_TARGETS = (*_METRIC_TARGETS, "min_ratio")  # max_bytes may also be a size string
_BUDGET = ("trials", "timeout_s")
_TOP = (
    "version",
    "metric",
    "targets",
    "space",
    "rounding",
    "activation",
    "pins",
    "budget",
    "seed",
    "sampler",
    "parallelism",
    "sensitivity",
    "holdout",
)


@dataclass(frozen=True)
class JobSpec:
    """A search job as the user asked for it (model and data aside).

    Attributes:
        metric: one of :data:`METRICS` (``accuracy``, ``agreement``, ``top5``, ``kl``, ...).
        targets: at most one metric target (``max_drop``, ``max_drop_rel``, ``min_metric``;
            ``max_metric`` for kl and nmse) and at most one size target (``max_bytes``,
            ``min_ratio``); none at all asks for the trade-off front alone.
        space: weight formats to search (``None``: the search's default formats).
        rounding: roundings of uniform formats (``nearest``, ``gptq``).
        activation: activation formats (``a8``, ``a16``, ``float``, ...).
        pins: layer-name pattern (``fnmatch``) -> format, in order; the first match wins.
        trials: trial budget over all runners (seeds included).
        timeout_s: wall-clock budget of each runner in seconds, or ``None``.
        seed: seeds the sampler (runner ``w`` uses ``seed + w``).
        sampler: ``tpe``, ``nsga2`` or ``random``.
        parallelism: trial runners sharing the study (a service may cap it).
        sensitivity: how per-layer sensitivity is measured: ``local`` (one forward and
            one backward pass), ``full`` (a forward per layer and choice) or ``auto``
            (``full`` for small models; see :mod:`search._sensitivity`).
        holdout: share of the evaluation samples held out of the search, in ``[0, 0.9]``
            (0: none); the chosen plan's result is judged on them.
        version: the JSON layout's version (:data:`SPEC_VERSION`).
    """

    metric: str = "accuracy"
    targets: Targets = field(default_factory=Targets)
    space: tuple[str, ...] | None = None
    rounding: tuple[str, ...] = DEFAULT_ROUNDINGS
    activation: tuple[str, ...] = DEFAULT_ACTIVATIONS
    pins: tuple[tuple[str, str], ...] = ()
    trials: int = 100
    timeout_s: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    parallelism: int = 1
    sensitivity: str = "auto"
    holdout: float = DEFAULT_HOLDOUT
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        if self.version != SPEC_VERSION:
            raise InvalidPlanError(
                f"job spec version {self.version} is not known; this service reads version "
                f"{SPEC_VERSION}"
            )
        if self.metric not in METRICS:
            raise InvalidPlanError(
                f"cannot search on `metric` {_short(self.metric)}; use {', '.join(METRICS)}"
            )
        _check_targets(self.targets, self.metric)
        for name in ("space", "rounding", "activation"):
            _normalise(self, name)
        if self.space is not None and not self.space:
            raise InvalidPlanError("`space` must list at least one weight format, e.g. int4, int8")
        if not self.rounding or not set(self.rounding) <= set(_ROUNDINGS):
            raise InvalidPlanError(
                f"`rounding` must list one or more of {', '.join(_ROUNDINGS)}, got "
                f"{_short(list(self.rounding))}"
            )
        if self.sampler not in SAMPLERS:
            raise InvalidPlanError(
                f"`sampler` must be one of {', '.join(SAMPLERS)}, got {_short(self.sampler)}"
            )
        if self.sensitivity not in SENSITIVITY_METHODS:
            raise InvalidPlanError(
                f"`sensitivity` must be one of {', '.join(SENSITIVITY_METHODS)}, got "
                f"{_short(self.sensitivity)}"
            )
        _check_int("budget.trials", self.trials, low=1, high=MAX_TRIALS)
        _check_int("seed", self.seed, low=0, high=MAX_SEED)
        _check_int("parallelism", self.parallelism, low=1, high=MAX_PARALLELISM)
        if not (isinstance(self.holdout, int | float) and math.isfinite(self.holdout)):
            raise InvalidPlanError(f"`holdout` must be a finite number, got {self.holdout}")
        check_holdout(self.holdout)
        if self.timeout_s is not None and not (
            math.isfinite(self.timeout_s) and 0 < self.timeout_s <= MAX_TIMEOUT_S
        ):
            raise InvalidPlanError(
                f"`budget.timeout_s` must be a positive number of seconds, at most "
                f"{MAX_TIMEOUT_S:.0f} (30 days), got {self.timeout_s}"
            )
        _check_pins(self)
        self.search_space()  # every format, rounding, activation and pin parses
        _check_ratio(self)

    def search_space(self) -> SearchSpace:
        """The :class:`SearchSpace` this spec names (pins as full choice keys)."""
        return SearchSpace.parse(
            ",".join(self.space) if self.space is not None else None,
            pins=[f"{pattern}={fmt}" for pattern, fmt in self.pins],
            roundings=tuple(self.rounding),
            activations=tuple(self.activation),
        )

    def search_config(self, *, model: str, data: str, cache_dir: str | None = None) -> SearchConfig:
        """The search's configuration for this spec on ``model`` and ``data`` (paths)."""
        return SearchConfig(
            model=model,
            data=data,
            metric=self.metric,
            targets=self.targets,
            space=self.search_space(),
            trials=self.trials,
            timeout_s=self.timeout_s,
            seed=self.seed,
            sampler=self.sampler,
            cache_dir=cache_dir,
            sensitivity=self.sensitivity,
            holdout=self.holdout,
        )

    def to_json(self) -> dict[str, Any]:
        """The spec as the API's job body (without ids); see the module docstring."""
        return {
            "version": self.version,
            "metric": self.metric,
            "targets": self.targets.to_json(),
            "space": None if self.space is None else list(self.space),
            "rounding": list(self.rounding),
            "activation": list(self.activation),
            "pins": dict(self.pins),
            "budget": {"trials": self.trials, "timeout_s": self.timeout_s},
            "seed": self.seed,
            "sampler": self.sampler,
            "parallelism": self.parallelism,
            "sensitivity": self.sensitivity,
            "holdout": self.holdout,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> JobSpec:
        """Read a spec document; missing options take their defaults.

        ``targets.max_bytes`` may be a byte count or a size string (``"8KB"``, ``"1.5MiB"``).

        Raises:
            InvalidPlanError: an unknown option, a value of the wrong type, or an invalid spec.
        """
        _known("job", doc, _TOP)
        targets = _mapping(doc, "targets")
        _known("targets", targets, _METRIC_TARGETS + _SIZE_TARGETS)
        budget = _mapping(doc, "budget")
        _known("budget", budget, _BUDGET)
        max_bytes = targets.get("max_bytes")
        if isinstance(max_bytes, str):
            max_bytes = parse_bytes(max_bytes)
        d = cls()
        pins = _mapping(doc, "pins")
        holdout = _num(doc.get("holdout"), "holdout")
        return cls(
            version=_int(doc.get("version", SPEC_VERSION), "version"),
            metric=_str(doc.get("metric", d.metric), "metric"),
            targets=Targets(
                **{n: _num(targets.get(n), f"targets.{n}") for n in _NUMBER_TARGETS},
                max_bytes=None if max_bytes is None else _int(max_bytes, "targets.max_bytes"),
            ),
            space=None if doc.get("space") is None else _strs(doc["space"], "space"),
            rounding=_strs(doc.get("rounding", d.rounding), "rounding"),
            activation=_strs(doc.get("activation", d.activation), "activation"),
            pins=tuple((_str(k, "pins"), _str(v, "pins")) for k, v in pins.items()),
            trials=_int(budget.get("trials", d.trials), "budget.trials"),
            timeout_s=_num(budget.get("timeout_s"), "budget.timeout_s"),
            seed=_int(doc.get("seed", d.seed), "seed"),
            sampler=_str(doc.get("sampler", d.sampler), "sampler"),
            parallelism=_int(doc.get("parallelism", d.parallelism), "parallelism"),
            sensitivity=_str(doc.get("sensitivity", d.sensitivity), "sensitivity"),
            holdout=d.holdout if holdout is None else holdout,
        )

    @classmethod
    def from_stored(cls, doc: Mapping[str, Any]) -> JobSpec:
        """A spec from a job row: version 1 documents, or the older search-config layout.

        Rows written before the spec existed hold ``SearchConfig.to_json()`` plus
        ``parallelism``; they are read into the equivalent spec so queued jobs survive an
        upgrade.
        """
        if "version" in doc:
            return cls.from_json(doc)
        space = doc.get("space") or {}
        return cls(
            metric=doc["metric"],
            targets=Targets.from_json(doc.get("targets", {})),
            space=tuple(space.get("formats", ())) or None,
            rounding=tuple(space.get("roundings", DEFAULT_ROUNDINGS)),
            activation=tuple(space.get("activations", DEFAULT_ACTIVATIONS)),
            pins=tuple(dict(space.get("pins", {})).items()),
            trials=int(doc.get("trials", 100)),
            timeout_s=doc.get("timeout_s"),
            seed=int(doc.get("seed", 0)),
            sampler=doc.get("sampler", "tpe"),
            parallelism=int(doc.get("parallelism", 1)),
        )

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every option a user can set: the dataclass fields, ``targets`` spelled out."""
        names = [f.name for f in fields(cls) if f.name not in ("targets", "version")]
        return (*_METRIC_TARGETS, *_SIZE_TARGETS, *names)


def max_ratio(formats: Sequence[str]) -> float:
    """The largest compression any plan of ``formats`` can reach: 32 / their fewest bits.

    Every stored weight takes at least its format's code bits (``int2``: 2, ``cb4``: 2,
    ``fp16``: 16), beside scales, codebooks and the tensors left in float, against the
    float model's 32; so ``float_bytes / payload_bytes <= 32 / min(bits)``.
    """
    return FLOAT_BITS / min(weight_format(f).bits for f in formats)


def _check_targets(targets: Targets, metric: str) -> None:
    given = {n: getattr(targets, n) for n in _METRIC_TARGETS + _SIZE_TARGETS}
    metric_given = [n for n in _METRIC_TARGETS if given[n] is not None]
    size_given = [n for n in _SIZE_TARGETS if given[n] is not None]
    if len(metric_given) > 1 or len(size_given) > 1:
        raise InvalidPlanError(
            "give at most one of `targets.max_drop`, `targets.max_drop_rel`, "
            "`targets.min_metric`, `targets.max_metric` and at most one of "
            "`targets.max_bytes`, `targets.min_ratio`; got "
            + ", ".join(f"`targets.{n}`" for n in metric_given + size_given)
        )
    targets.check_metric(metric)
    if metric == "sqnr" and metric_given and metric_given[0] != "min_metric":
        raise InvalidPlanError(
            "sqnr has no finite float baseline to drop from; give `targets.min_metric` "
            "(in dB) instead"
        )


def _normalise(spec: JobSpec, name: str) -> None:
    """De-duplicate list option ``name`` in order, cap its length, refuse ``/`` in entries."""
    value = getattr(spec, name)
    if value is None:
        return
    unique = tuple(dict.fromkeys(value))
    if len(unique) > MAX_ENTRIES:
        raise InvalidPlanError(
            f"`{name}` lists {len(unique)} distinct entries; at most {MAX_ENTRIES} are allowed"
        )
    for entry in unique:
        if not isinstance(entry, str) or "/" in entry or not entry or len(entry) > 64:
            raise InvalidPlanError(
                f"`{name}` entry {_short(entry)} is not a name such as "
                f"{'int4' if name == 'space' else 'a8' if name == 'activation' else 'gptq'}"
                " (only a pin takes FORMAT/ROUNDING/ACTIVATION)"
            )
    object.__setattr__(spec, name, unique)  # frozen: normalised once, here


def _check_pins(spec: JobSpec) -> None:
    if len(spec.pins) > MAX_PINS:
        raise InvalidPlanError(f"`pins` has {len(spec.pins)} entries; at most {MAX_PINS}")
    seen: set[str] = set()
    for pattern, fmt in spec.pins:  # each pin's format is parsed by the search space
        if not pattern or len(pattern) > MAX_PINS or "=" in pattern or pattern in seen:
            raise InvalidPlanError(
                f"`pins` pattern {_short(pattern)} must be a non-empty layer-name pattern of "
                f"at most {MAX_PINS} characters without '=', given once"
            )
        seen.add(pattern)
        if len(fmt) > 64:
            raise InvalidPlanError(f"`pins` entry {_short(pattern)}: {_short(fmt)} is too long")


def _check_ratio(spec: JobSpec) -> None:
    ratio = spec.targets.min_ratio
    if ratio is None:
        return
    space = spec.search_space()
    formats = (*space.formats, *(key.split("/")[0] for key in space.pins.values()))
    best = max_ratio(formats)
    if ratio > best:
        raise InvalidPlanError(
            f"`targets.min_ratio` is {ratio:g}, but no plan of this space can compress more "
            f"than {best:g}x ({FLOAT_BITS} float bits over the fewest bits of its formats); "
            "lower it, or add smaller formats to `space` (e.g. int2, cb4)"
        )


def _check_int(name: str, value: int, *, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPlanError(f"`{name}` must be an integer, got {_short(value)}")
    if not low <= value <= high:
        raise InvalidPlanError(f"`{name}` must be between {low} and {high}, got {_short(value)}")


def _short(value: Any) -> str:
    """``repr(value)``, cut to 80 characters: a message never echoes a whole body."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _known(where: str, doc: Mapping[str, Any], names: Sequence[str]) -> None:
    unknown = sorted(set(doc) - set(names), key=str)
    if unknown:
        raise InvalidPlanError(
            f"unknown {where} option {_short(unknown[0])}; known: {', '.join(names)}"
        )


def _mapping(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name) or {}
    if not isinstance(value, Mapping):
        raise InvalidPlanError(f"`{name}` must be an object, got {type(value).__name__}")
    return value


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPlanError(f"`{name}` must be an integer, got {_short(value)}")
    return value


def _num(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPlanError(f"`{name}` must be a number, got {_short(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise InvalidPlanError(f"`{name}` must be a finite number, got {_short(value)}")
    return number


def _str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidPlanError(f"`{name}` must be a string, got {_short(value)}")
    return value


def _strs(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidPlanError(f"`{name}` must be a list of strings, got {_short(value)}")
    return tuple(dict.fromkeys(_str(v, name) for v in value))  # duplicates dropped, in order
