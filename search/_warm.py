"""Warm start: seed a study with an earlier job's chosen plan and front, mapped by layer name.

A nightly job compresses a retrained model to the same target as yesterday's. Yesterday's
chosen plan and Pareto front are the best guesses for today's, so a warm study enqueues
them first (before the uniform baselines and the ILP's seeds, :func:`search._study.create_study`).

Mapping onto the new model, layer by layer, by NAME: a layer present in both models with
the same weight shape keeps its earlier choice when that choice is one of the new space's
choices for the layer (:meth:`Evaluator.choices`: the format is in the space and fits
the layer); a new layer, one whose shape changed, or one whose choice is not allowed any
more takes the choice of the ILP seed nearest in bytes to the earlier chosen plan (the
layer is searched again from the new sensitivity). What the earlier study knew of each
layer -- its weight shape and hash -- is stored in its ``layers`` user attribute by
:func:`search._open.create_search`, and read back by :func:`search._open.load_warm_start`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from search._evaluator import Evaluator
from search._space import SearchSpace

__all__ = ["WarmStart", "layer_facts", "map_plans", "nearest_seed"]


@dataclass(frozen=True)
class WarmStart:
    """What a warm study starts from: an earlier job's plans and layer facts.

    Attributes:
        from_job: the earlier job's id (reported back in ``result["warm_start"]``).
        plans: ``layer -> choice`` of the earlier chosen plan first, then its front.
        layers: per earlier layer ``{"shape": [...], "hash": "..."}`` (empty for a study
            made before hashes were stored: then only names and choices are checked).
        chosen_bytes: the earlier chosen plan's payload bytes, if known.
    """

    from_job: int | None
    plans: tuple[dict[str, str], ...]
    layers: dict[str, dict[str, Any]]
    chosen_bytes: int | None = None


def layer_facts(ev: Evaluator, hashes: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The ``layers`` user attribute of a study: each layer's weight shape and hash."""
    return {
        x.name: {"shape": list(ev.shapes[x.name]), "hash": hashes.get(x.name)} for x in ev.layers
    }


def nearest_seed(
    seeds: list[tuple[dict[str, str], int]], target_bytes: int | None
) -> dict[str, str] | None:
    """The ILP seed whose byte budget is nearest ``target_bytes`` (the largest if unknown)."""
    if not seeds:
        return None
    if target_bytes is None:
        return max(seeds, key=lambda s: s[1])[0]
    return min(seeds, key=lambda s: abs(s[1] - target_bytes))[0]


def map_plans(
    warm: WarmStart,
    ev: Evaluator,
    space: SearchSpace,
    fallback: dict[str, str],
    *,
    limit: int,
) -> list[dict[str, str]]:
    """The earlier plans as plans of ``ev``'s model (module doc), distinct, at most ``limit``.

    ``fallback``: a choice per layer of the new model (an ILP seed) for the layers that
    cannot keep their earlier choice.
    """
    out: list[dict[str, str]] = []
    for old in warm.plans:
        plan = {}
        for layer in ev.layers:
            name = layer.name
            options = ev.choices(space, name)
            before = warm.layers.get(name)
            same_shape = before is None or list(before["shape"]) == list(ev.shapes[name])
            keep = name in old and old[name] in options and same_shape
            if warm.layers and before is None:
                keep = False  # a layer the earlier model did not have
            plan[name] = old[name] if keep else fallback.get(name, options[0])
        if plan not in out:
            out.append(plan)
        if len(out) >= limit:
            break
    return out
