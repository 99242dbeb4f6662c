"""Sensitivity: the damage of quantizing one layer alone, per choice, cached per model.

Two methods give the same table (layer -> choice -> damage, same units):

- ``full`` (:func:`measure_sensitivity`, here): for layer ``l`` and choice ``c`` the
  plan keeps every other layer at ``fp32`` with float activations and puts ``l`` in
  ``c``; :meth:`~search._evaluator.Evaluator.damage` measures the output distortion on
  calibration batches -- one model forward per (layer, choice).
- ``local`` (:func:`search._sensitivity_local.measure_sensitivity_local`): the same
  damage estimated from layer-local quantities after one forward and one backward pass.

Results are stored in a JSON file keyed by the model's sha256, the data file's sha256,
the metric family and the method (the two methods' values are on different absolute
scales and never share a file), so a later job on the same model and data reuses every
value it already has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from engine.quant import LayerFormat, QuantPlan
from search._evaluator import CLASSIFICATION, Evaluator
from search._space import SearchSpace, parse_choice

__all__ = [
    "METHODS",
    "Sensitivity",
    "cache_key",
    "cache_path",
    "measure_sensitivity",
    "read_cache",
    "write_cache",
]

METHODS = ("auto", "local", "full")
"""How sensitivity is measured: ``local`` (few passes), ``full`` (a forward per pair),
or ``auto`` (``full`` where it is cheap; :func:`search._open.sensitivity_method`)."""

Sensitivity = dict[str, dict[str, float]]
"""layer -> choice key -> damage."""

FLOAT = LayerFormat("fp32", activation="float")


def cache_path(
    cache_dir: Path, model_sha: str, data_sha: str, metric: str, *, method: str = "full"
) -> Path:
    """The cache file of one model, data file, metric family and method."""
    family = "kl" if metric in CLASSIFICATION else "nsr"
    name = f"{model_sha[:32]}-{data_sha[:16]}-{family}"
    return (
        cache_dir / "sensitivity" / f"{name}.json"
        if method == "full"
        else (cache_dir / "sensitivity" / f"{name}-{method}.json")
    )


def cache_key(layer: str, choice: str, scale: str) -> str:
    """A cached value's key: the layer, the choice key and the scale rule."""
    return f"{layer}|{choice}|{scale}"


def read_cache(path: Path | None) -> dict[str, float]:
    """The cached values in ``path`` (none when missing or damaged: never trusted)."""
    if path is None or not path.is_file():
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError):
        return {}


def write_cache(path: Path | None, data: Mapping[str, float]) -> None:
    """Replace ``path`` with ``data`` atomically (a reader sees the old or the new file)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(dict(data), sort_keys=True))
    os.replace(tmp, path)


def measure_sensitivity(
    ev: Evaluator,
    space: SearchSpace,
    *,
    cache_file: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    known: Mapping[str, float] | None = None,
) -> Sensitivity:
    """Damage of every (layer, choice) of ``space``; cached in ``cache_file``.

    ``known``: values (by :func:`cache_key`) taken as measured, e.g. reused from an
    earlier version of the model (:mod:`search._layer_cache`).
    """
    cached = read_cache(cache_file) | dict(known or {})
    todo = [(layer.name, key) for layer in ev.layers for key in ev.choices(space, layer.name)]
    out: Sensitivity = {layer.name: {} for layer in ev.layers}
    ev.prime(space)
    base = {layer.name: FLOAT for layer in ev.layers}
    for i, (name, key) in enumerate(todo):
        ck = cache_key(name, key, space.scale)
        if ck not in cached:
            plan = QuantPlan({**base, name: parse_choice(key, scale=space.scale)})
            cached[ck] = ev.damage(plan)
        out[name][key] = cached[ck]
        if progress is not None:
            progress(i + 1, len(todo))
    write_cache(cache_file, cached)
    return out
