"""Targets of a search: how much metric may be lost, how large the result may be.

With baseline metric ``m0`` (the float model on the evaluation data) and float
size ``F`` (bytes of the float model's tensors):

- metric floor ``= max(m0 - max_drop, m0 * (1 - max_drop_rel), min_metric)``
  over the targets given, for a metric where higher is better (accuracy, cosine...);
- metric ceiling ``= max_metric``, for a metric where lower is better (kl, nmse: their
  float baseline is 0, so a drop or a floor means nothing for them);
- byte ceiling ``= min(max_bytes, floor(F / min_ratio))`` over the targets given.

A plan meets the targets when its metric is at least the floor (at most the metric
ceiling) and its payload bytes at most the byte ceiling. As Optuna constraints
(feasible when ``<= 0``): ``floor - metric`` (``metric - ceiling``) and
``(bytes - ceiling) / ceiling``. :meth:`Targets.check_metric` refuses targets that go
the wrong way for the metric, or that no value of the metric can meet or miss:
:data:`METRIC_RANGES` holds each metric's range (accuracy, agreement and top5 are
fractions in ``[0, 1]``; cosine is in ``[-1, 1]``; kl and nmse are ``>= 0``; sqnr is in
dB), so ``min_metric`` and ``max_metric`` must lie in it and ``max_drop`` may not exceed
its width (a drop of 5 on accuracy would allow everything).

Messages name options as the REST API does (```targets.max_drop```, in backticks);
``mpq search`` rewrites the backticked names into its flags.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.data import METRICS
from engine.errors import InvalidPlanError

__all__ = ["MAX_BYTES", "METRIC_RANGES", "Targets", "parse_bytes"]

MAX_BYTES = 2**63 - 1
"""The largest byte count a target may name (it is stored as a SQL ``BIGINT``)."""

METRIC_RANGES: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "agreement": (0.0, 1.0),
    "top5": (0.0, 1.0),
    "cosine": (-1.0, 1.0),
    "kl": (0.0, math.inf),
    "nmse": (0.0, math.inf),
    "sqnr": (-math.inf, math.inf),
}
"""Every value a metric can take, ``(low, high)``; a target outside it means nothing."""

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20}


def parse_bytes(text: str) -> int:
    """``"8KB"`` -> 8000, ``"1.5MiB"`` -> 1572864, ``"2048"`` -> 2048 (KB = 1000 B)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text[:64], flags=re.ASCII)
    unit = m[2].upper() if m else ""
    if m is None or unit not in _UNITS or len(text) > 64:
        raise InvalidPlanError(
            f"`targets.max_bytes`: size {text[:64]!r} is not understood; write e.g. 8000, "
            "8KB, 11.4MB or 2MiB"
        )
    value = float(m[1]) * _UNITS[unit]
    if not value < MAX_BYTES:  # also inf, from hundreds of digits
        raise InvalidPlanError(f"`targets.max_bytes` must be below 2^63 bytes, got {text!r}")
    return int(value)


@dataclass(frozen=True)
class Targets:
    """The user's targets; any subset may be given (none: a pure trade-off search)."""

    max_drop: float | None = None
    max_drop_rel: float | None = None
    min_metric: float | None = None
    max_metric: float | None = None
    max_bytes: int | None = None
    min_ratio: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_drop", "max_drop_rel", "min_metric", "max_metric", "min_ratio"):
            v = getattr(self, name)
            if v is not None and not math.isfinite(v):
                raise InvalidPlanError(f"`targets.{name}` must be a finite number, got {v}")
        if self.max_drop is not None and self.max_drop < 0:
            raise InvalidPlanError(f"`targets.max_drop` must be >= 0, got {self.max_drop}")
        if self.max_drop_rel is not None and not 0 <= self.max_drop_rel < 1:
            raise InvalidPlanError(
                f"`targets.max_drop_rel` must be a fraction in [0, 1), got {self.max_drop_rel}"
            )
        if self.max_bytes is not None and not 0 < self.max_bytes <= MAX_BYTES:
            raise InvalidPlanError(
                f"`targets.max_bytes` must be a positive number of bytes below 2^63, got "
                f"{self.max_bytes}"
            )
        if self.min_ratio is not None and self.min_ratio <= 1:
            raise InvalidPlanError(f"`targets.min_ratio` must be above 1, got {self.min_ratio}")

    @property
    def has_metric_target(self) -> bool:
        given = (self.max_drop, self.max_drop_rel, self.min_metric, self.max_metric)
        return any(v is not None for v in given)

    def check_metric(self, metric: str) -> None:
        """Refuse targets that go the wrong way for ``metric``'s direction.

        Raises:
            InvalidPlanError: ``max_metric`` on a metric where higher is better, or
                ``max_drop``/``max_drop_rel``/``min_metric`` on one where lower is better.
        """
        info = METRICS.get(metric)
        if info is None:
            return  # the metric itself is refused by the caller, with the list of metrics
        if info.higher_is_better and self.max_metric is not None:
            raise InvalidPlanError(
                f"`targets.max_metric` is for metrics where lower is better (kl, nmse); "
                f"{metric} is higher-is-better: give `targets.min_metric`, "
                "`targets.max_drop` or `targets.max_drop_rel`"
            )
        if not info.higher_is_better:
            given = [
                n
                for n in ("max_drop", "max_drop_rel", "min_metric")
                if getattr(self, n) is not None
            ]
            if given:
                raise InvalidPlanError(
                    f"{metric} is lower-is-better (0 for the float model), so "
                    f"`targets.{given[0]}` means nothing for it: give `targets.max_metric`, "
                    f"the largest {metric} allowed (e.g. 0.01)"
                )
        self._check_range(metric)

    def _check_range(self, metric: str) -> None:
        """Refuse a target outside the values ``metric`` can take (:data:`METRIC_RANGES`)."""
        low, high = METRIC_RANGES.get(metric, (-math.inf, math.inf))
        shown = f"[{low:g}, {high:g}]" if math.isfinite(high) else f">= {low:g}"
        for name in ("min_metric", "max_metric"):
            v = getattr(self, name)
            if v is not None and not low <= v <= high:
                raise InvalidPlanError(
                    f"`targets.{name}` is {v:g}, but {metric} is always {shown}: give a "
                    f"value in that range (e.g. 0.99 for 99%)"
                    if name == "min_metric"
                    else f"`targets.{name}` is {v:g}, but {metric} is always {shown}: give a "
                    "value in that range (e.g. 0.01)"
                )
        width = high - low
        if self.max_drop is not None and self.max_drop > width:
            raise InvalidPlanError(
                f"`targets.max_drop` is {self.max_drop:g}, but {metric} is always {shown}, so "
                f"it cannot drop by more than {width:g}: give an absolute drop such as 0.01 "
                "(one point), or `targets.max_drop_rel` for a relative one"
            )

    @property
    def has_size_target(self) -> bool:
        return self.max_bytes is not None or self.min_ratio is not None

    def metric_floor(self, baseline: float) -> float | None:
        floors = []
        if self.max_drop is not None:
            floors.append(baseline - self.max_drop)
        if self.max_drop_rel is not None:
            floors.append(baseline * (1 - self.max_drop_rel))
        if self.min_metric is not None:
            floors.append(self.min_metric)
        return max(floors) if floors else None

    def metric_ceiling(self) -> float | None:
        """The largest metric allowed (``max_metric``; lower-is-better metrics only)."""
        return self.max_metric

    def byte_ceiling(self, float_bytes: int) -> int | None:
        ceilings = []
        if self.max_bytes is not None:
            ceilings.append(self.max_bytes)
        if self.min_ratio is not None:
            ceilings.append(math.floor(float_bytes / self.min_ratio))
        return min(ceilings) if ceilings else None

    def constraints(
        self, metric: float, nbytes: int, *, baseline: float, float_bytes: int
    ) -> dict[str, float]:
        """Constraint values (feasible when every value is ``<= 0``)."""
        out: dict[str, float] = {}
        floor = self.metric_floor(baseline)
        if floor is not None:
            out["metric"] = floor - metric
        if self.max_metric is not None:
            out["metric"] = metric - self.max_metric
        ceiling = self.byte_ceiling(float_bytes)
        if ceiling is not None:
            out["bytes"] = (nbytes - ceiling) / ceiling
        return out

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Targets:
        return cls(**dict(d))  # documents from before max_metric lack it: the default
