"""A search job's configuration: data, plain JSON, the same in the CLI, the study and Celery."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.data import METRICS
from engine.errors import InvalidPlanError
from search._sensitivity import METHODS
from search._space import SearchSpace
from search._targets import Targets

__all__ = ["DEFAULT_HOLDOUT", "MAX_HOLDOUT", "SAMPLERS", "SearchConfig", "check_holdout"]

SAMPLERS = ("tpe", "nsga2", "random")
DEFAULT_HOLDOUT = 0.25
"""Share of the evaluation samples held out from the search by default."""
MAX_HOLDOUT = 0.9


def check_holdout(holdout: float) -> None:
    """Raise :class:`InvalidPlanError` unless ``0 <= holdout <= MAX_HOLDOUT``."""
    if not (math.isfinite(holdout) and 0 <= holdout <= MAX_HOLDOUT):
        raise InvalidPlanError(
            f"holdout must be a fraction of the evaluation samples in [0, {MAX_HOLDOUT}] "
            f"(0 turns the held-out split off), got {holdout}"
        )


@dataclass(frozen=True)
class SearchConfig:
    """What to search and how.

    Attributes:
        model, data: paths of the model (.pt2/.onnx) and data file.
        metric: a name in :data:`engine.data.METRICS` (``accuracy``, ``agreement``,
            ``top5``, ``kl``, ``cosine``, ``nmse``, ``sqnr``).
        targets: metric floor (ceiling, for kl and nmse) and/or size ceiling.
        space: formats per layer.
        trials: trial budget (seeds included), over all workers.
        timeout_s: wall-clock budget of each worker, or None.
        seed: seeds the sampler (worker ``w`` uses ``seed + w``) and the held-out split.
        sampler: ``tpe`` (multivariate, constant liar), ``nsga2`` or ``random``.
        ilp_seeds: rungs of the ILP budget ladder enqueued first (0: no seeding).
        chunks: fractions of the evaluation batches scored before the whole split.
        cache_dir: where sensitivity tables are cached (None: no cache).
        sensitivity: ``auto``, ``local`` or ``full`` (:mod:`search._sensitivity`).
        holdout: share of the evaluation samples held out of the search, scored only
            for the chosen plan and the float model (0: none; see
            :func:`engine.data.holdout_split`).
    """

    model: str
    data: str
    metric: str
    targets: Targets = field(default_factory=Targets)
    space: SearchSpace = field(default_factory=SearchSpace)
    trials: int = 100
    timeout_s: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    ilp_seeds: int = 8
    chunks: tuple[float, ...] = (0.25, 1.0)
    cache_dir: str | None = None
    sensitivity: str = "auto"
    holdout: float = DEFAULT_HOLDOUT

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise InvalidPlanError(
                f"cannot search on metric {self.metric!r}; use {', '.join(METRICS)}"
            )
        self.targets.check_metric(self.metric)
        if self.metric == "sqnr" and (self.targets.max_drop or self.targets.max_drop_rel):
            raise InvalidPlanError(
                "sqnr has no finite float baseline to drop from; give `targets.min_metric` (in dB)"
            )
        if self.sampler not in SAMPLERS:
            raise InvalidPlanError(f"sampler must be one of {', '.join(SAMPLERS)}")
        if self.sensitivity not in METHODS:
            raise InvalidPlanError(
                f"sensitivity must be auto, local or full, got {self.sensitivity!r}"
            )
        if self.trials < 1:
            raise InvalidPlanError(f"trials must be at least 1, got {self.trials}")
        check_holdout(self.holdout)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "metric": self.metric,
            "targets": self.targets.to_json(),
            "space": self.space.to_json(),
            "trials": self.trials,
            "timeout_s": self.timeout_s,
            "seed": self.seed,
            "sampler": self.sampler,
            "ilp_seeds": self.ilp_seeds,
            "chunks": list(self.chunks),
            "cache_dir": self.cache_dir,
            "sensitivity": self.sensitivity,
            "holdout": self.holdout,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SearchConfig:
        return cls(
            model=d["model"],
            data=d["data"],
            metric=d["metric"],
            targets=Targets.from_json(d["targets"]),
            space=SearchSpace.from_json(d["space"]),
            trials=int(d["trials"]),
            timeout_s=d.get("timeout_s"),
            seed=int(d["seed"]),
            sampler=d["sampler"],
            ilp_seeds=int(d["ilp_seeds"]),
            chunks=tuple(d["chunks"]),
            cache_dir=d.get("cache_dir"),
            sensitivity=d.get("sensitivity", "auto"),
            # Studies made before the held-out split searched every evaluation sample.
            holdout=float(d.get("holdout", 0.0)),
        )
