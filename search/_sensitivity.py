"""Sensitivity: the damage of quantizing one layer alone, per choice, cached per model.

For layer ``l`` and choice ``c`` the plan keeps every other layer at ``fp32``
with float activations and puts ``l`` in ``c``;
:meth:`~search._evaluator.Evaluator.damage` measures the output distortion on
calibration batches. Results are stored in a JSON file keyed by the model's
sha256, the data file's sha256 and the metric family, so a later job on the
same model and data reuses every value it already has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.quant import LayerFormat, QuantPlan
from search._evaluator import CLASSIFICATION, Evaluator
from search._space import SearchSpace, parse_choice

__all__ = ["Sensitivity", "cache_path", "measure_sensitivity"]

Sensitivity = dict[str, dict[str, float]]
"""layer -> choice key -> damage."""

FLOAT = LayerFormat("fp32", activation="float")


def cache_path(cache_dir: Path, model_sha: str, data_sha: str, metric: str) -> Path:
    family = "kl" if metric in CLASSIFICATION else "nsr"
    return cache_dir / "sensitivity" / f"{model_sha[:32]}-{data_sha[:16]}-{family}.json"


def measure_sensitivity(
    ev: Evaluator,
    space: SearchSpace,
    *,
    cache_file: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Sensitivity:
    """Damage of every (layer, choice) of ``space``; cached in ``cache_file``."""
    cached: dict[str, float] = {}
    if cache_file is not None and cache_file.is_file():
        try:
            cached = {str(k): float(v) for k, v in json.loads(cache_file.read_text()).items()}
        except (ValueError, AttributeError):
            cached = {}  # a damaged cache is recomputed, never trusted
    todo = [
        (layer.name, key)
        for layer in ev.layers
        for key in space.choices(layer.name, embedding=layer.name in ev.embeddings)
    ]
    out: Sensitivity = {layer.name: {} for layer in ev.layers}
    ev.prime(space)
    base = {layer.name: FLOAT for layer in ev.layers}
    for i, (name, key) in enumerate(todo):
        ck = f"{name}|{key}|{space.scale}"
        if ck not in cached:
            plan = QuantPlan({**base, name: parse_choice(key, scale=space.scale)})
            cached[ck] = ev.damage(plan)
        out[name][key] = cached[ck]
        if progress is not None:
            progress(i + 1, len(todo))
    if cache_file is not None:
        _write_atomic(cache_file, cached)
    return out


def _write_atomic(path: Path, data: Mapping[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(dict(data), sort_keys=True))
    os.replace(tmp, path)
