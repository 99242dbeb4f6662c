"""The search's plots: the Pareto front (pareto.png) and the chosen plan per layer (layers.png)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a display

import matplotlib.pyplot as plt

from engine.data import METRICS
from engine.quant import weight_format
from search._evaluator import Evaluator

__all__ = ["plot_layers", "plot_pareto"]


def plot_pareto(result: dict[str, Any], path: Path, ev: Evaluator) -> None:
    """Metric against payload bytes: every trial, the front, uniform baselines, the choice."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    trials = [t for t in result["trials"] if t["metric"] is not None and t["state"] == "complete"]
    front = set(result["front"])
    ax.scatter(
        [t["bytes"] for t in trials], [t["metric"] for t in trials], s=12, c="#9bb", label="trials"
    )
    pts = sorted((t["bytes"], t["metric"]) for t in trials if t["number"] in front)
    if pts:
        ax.plot(*zip(*pts, strict=True), "-o", c="#07a", ms=4, label="Pareto front")
    for u in result.get("uniform", []):
        ax.scatter([u["bytes"]], [u["metric"]], marker="s", c="#c60", s=30)
        ax.annotate(u["plan"].split("/")[0], (u["bytes"], u["metric"]), fontsize=7)
    chosen = result.get("chosen")
    if chosen:
        ax.scatter(
            [chosen["payload_bytes"]],
            [chosen["metric"]],
            marker="*",
            s=180,
            c="#d22",
            label="chosen",
            zorder=5,
        )
    floor = result["targets"]["metric_floor"]
    if floor is not None:
        ax.axhline(floor, ls="--", c="#888", lw=1, label="metric floor")
    metric_ceiling = result["targets"].get("metric_ceiling")
    if metric_ceiling is not None:
        ax.axhline(metric_ceiling, ls="--", c="#888", lw=1, label="metric ceiling")
    ceiling = result["targets"]["byte_ceiling"]
    if ceiling is not None:
        ax.axvline(ceiling, ls=":", c="#888", lw=1, label="size ceiling")
    ax.set_xscale("log")
    ax.set_xlabel("payload bytes (model.mpq tensors)")
    lower = not METRICS[ev.metric].higher_is_better
    ax.set_ylabel(f"{ev.metric} (lower is better)" if lower else ev.metric)
    ax.set_title(f"{ev.metric} vs size (float: {result['baseline']['metric']:.4g})")
    ax.legend(fontsize=7, loc="upper right" if lower else "lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_layers(result: dict[str, Any], path: Path) -> None:
    """Bits per weight of the chosen plan per layer, beside each layer's int4 sensitivity."""
    layers = result["chosen"]["plan"]["layers"]
    names = list(layers)
    bits = [float(weight_format(layers[n]["weight"]).bits) for n in names]
    sens = result.get("sensitivity", {})
    damage = [_int4_damage(sens.get(n, {})) for n in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * len(names) + 2), 4.2), dpi=110)
    x = range(len(names))
    ax.bar(x, bits, color="#07a")
    for i, n in enumerate(names):
        ax.annotate(layers[n]["weight"], (i, bits[i]), ha="center", va="bottom", fontsize=6)
    ax.set_ylabel("bits per weight")
    ax.set_xticks(list(x))
    ax.set_xticklabels(names, rotation=90, fontsize=6)
    ax2 = ax.twinx()
    ax2.plot(list(x), damage, "o", c="#d22", ms=3)
    ax2.set_yscale("log")
    ax2.set_ylabel("damage alone at int4 (log)")
    ax.set_title("chosen format per layer")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _int4_damage(choices: dict[str, float]) -> float:
    vals = [v for k, v in choices.items() if k.startswith("int4/")] or list(choices.values())
    return max(min(vals), 1e-12) if vals else math.nan
