"""Observed value ranges of every floating-point tensor a model computes.

Integer-only execution (:mod:`engine.transforms.integer`) needs a scale for each tensor it
keeps in integers -- not only the quantized layers' inputs, which
:mod:`engine.transforms._calibrate` covers, but also layer outputs that feed residual adds,
pools and activation-by-activation products. One pass of the float model over
the calibration batches records ``(min, max)`` of each node's output; the ranges
are stored with the quantized model (and in ``model.mpq``), so the integer model
can be built from the artifact alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import fx

from engine.ir import IRModel, to_graph_module

__all__ = ["Ranges", "observe_ranges"]

Ranges = dict[str, tuple[float, float]]
"""IR node name -> (min, max) of its floating-point output over the calibration data."""


def observe_ranges(model: IRModel, batches: Iterable[Sequence[torch.Tensor]]) -> Ranges:
    """Run ``model`` on ``batches``; return the range of every floating tensor node output.

    Non-finite values are ignored (an attention mask's ``-inf`` is not a range).
    Nodes whose output never held a finite value are left out.
    """
    ranges: Ranges = {}

    class _Observer(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            out = super().run_node(n)
            name = n.meta.get("mpq_name")
            if name is not None and isinstance(out, torch.Tensor) and out.is_floating_point():
                found = _finite_range(out.detach())
                if found is not None:
                    lo, hi = found
                    old = ranges.get(name)
                    ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            return out

    observer = _Observer(to_graph_module(model))
    with torch.no_grad():
        for batch in batches:
            observer.run(*batch)
    return ranges


def _finite_range(t: torch.Tensor) -> tuple[float, float] | None:
    """``(min, max)`` of the finite values of ``t``; None if it holds none.

    One ``aminmax`` pass; only a tensor holding an infinity or NaN pays for the masked
    copy (on EfficientNet-Lite2 the copy of every activation cost 4x the forward pass).
    """
    if t.numel() == 0:
        return None
    lo, hi = (float(v) for v in torch.aminmax(t))
    if math.isfinite(lo) and math.isfinite(hi):
        return lo, hi
    finite = t[torch.isfinite(t)]
    if not finite.numel():
        return None
    return float(finite.min()), float(finite.max())
