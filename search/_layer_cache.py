"""Sensitivity reused across model versions: values keyed by each layer's weight hash.

A nightly job compresses a model that changed a little since the last run. The per-model
cache (:func:`search._sensitivity.cache_path`, keyed by the whole file's sha256) misses
then, although most layers may be byte-identical. This cache keys each value by the
layer's :func:`weight_hash` instead, so any version that shares a layer reuses it::

    <cache_dir>/sensitivity/layers/<data sha256[:16]>-<kl|nsr>[-<method>].json
    key: "<weight hash[:32]>|<layer name>|<choice key>|<scale rule>"

The data file, metric family and method stay in the file name for the same reasons as
in the per-model cache (damage is measured on that data, in that family's units, and
the two methods' scales differ). The layer's name is part of the key too, so two layers
of one model with equal weights in different places are never confused.

Approximation. A layer's damage is measured with every *other* layer as it is in the
model at hand (``full``: the rest in ``fp32``; ``local``: the curvature seen through the
rest). When other layers changed, a reused value was measured in a slightly different
network. It is used only to rank plans (ILP seeds, descent steps); every trial is
evaluated for real on the new model, so a stale value can cost trials, never a wrong
result. For a retrained model the rest of the network moves little, and the saving
(no forward per (layer, choice) for the unchanged layers) is what a nightly job is after.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.transforms import fold_batch_norm
from search._evaluator import CLASSIFICATION, Evaluator
from search._sensitivity import (
    Sensitivity,
    cache_key,
    measure_sensitivity,
    read_cache,
    write_cache,
)
from search._sensitivity_local import measure_sensitivity_local
from search._space import SearchSpace

__all__ = ["Reuse", "layer_cache_path", "layer_hashes", "measure_reusing", "weight_hash"]


def weight_hash(weight: torch.Tensor) -> str:
    """sha256 (hex) of a weight tensor's dtype, shape and bytes (C order).

    ``sha256(dtype name | "|" | shape as "d0,d1,..." | "|" | raw bytes)``: two tensors
    hash alike exactly when their dtype, shape and every element's bits agree.
    """
    t = weight.detach().contiguous().cpu()
    h = hashlib.sha256()
    h.update(f"{t.dtype}|{','.join(map(str, t.shape))}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def layer_hashes(ev: Evaluator) -> dict[str, str]:
    """:func:`weight_hash` of every layer's weight after batch-norm folding.

    The folded weight is what gets quantized, so a layer whose batch norm changed while its
    convolution did not counts as changed.
    """
    folded, _ = fold_batch_norm(ev.ir)
    return {x.name: weight_hash(folded.tensors[x.weight]) for x in ev.layers}


def layer_cache_path(cache_dir: Path, data_sha: str, metric: str, *, method: str) -> Path:
    """The layer-keyed cache file of one data file, metric family and method."""
    family = "kl" if metric in CLASSIFICATION else "nsr"
    suffix = "" if method == "full" else f"-{method}"
    return cache_dir / "sensitivity" / "layers" / f"{data_sha[:16]}-{family}{suffix}.json"


@dataclass(frozen=True)
class Reuse:
    """How a sensitivity table was obtained: layers read back vs measured now."""

    layers_reused: int
    layers_measured: int


def _key(digest: str, layer: str, choice: str, scale: str) -> str:
    return f"{digest[:32]}|{layer}|{choice}|{scale}"


def measure_reusing(
    ev: Evaluator,
    space: SearchSpace,
    *,
    method: str,
    seed: int,
    hashes: dict[str, str],
    layer_cache: Path | None,
    model_cache: Path | None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Sensitivity, Reuse]:
    """The sensitivity of ``space`` on ``ev``, measuring only layers no cache knows.

    A layer is *reused* when every one of its (layer, choice) values is in the layer
    cache under its current weight hash; the others are *measured* (``method``: ``full``
    or ``local``, as :func:`search._open.create_search` resolves it) and added to both
    caches. ``hashes``: :func:`layer_hashes` of ``ev``. ``layer_cache`` None: no reuse
    across versions (the per-model cache alone).
    """
    shared, mine = read_cache(layer_cache), read_cache(model_cache)
    known: dict[str, float] = {}
    reused = 0
    for layer in ev.layers:
        digest = hashes[layer.name]
        keys = {
            cache_key(layer.name, k, space.scale): _key(digest, layer.name, k, space.scale)
            for k in ev.choices(space, layer.name)
        }
        if all(own in mine or v in shared for own, v in keys.items()):
            reused += 1
            known |= {own: mine.get(own, shared.get(v, 0.0)) for own, v in keys.items()}
    if method == "local":
        out = measure_sensitivity_local(
            ev, space, seed=seed, cache_file=model_cache, progress=progress, known=known
        )
    else:
        out = measure_sensitivity(ev, space, cache_file=model_cache, progress=progress, known=known)
    for name, row in out.items():
        shared |= {_key(hashes[name], name, k, space.scale): v for k, v in row.items()}
    write_cache(layer_cache, shared)
    return out, Reuse(reused, len(ev.layers) - reused)
