"""Evaluating plans of one model on one dataset: bytes, metric on growing subsets, damage.

One :class:`Evaluator` per process holds the model's IR, the calibration and
evaluation batches, the float model's outputs and a weight cache, so a trial
costs its forward passes plus the layers whose format is new to the cache.

- ``payload_bytes(plan)`` is the exact tensor bytes of the ``model.mpq`` the plan
  gives (:func:`engine.io.predict_payload_bytes`), without quantizing.
- ``evaluate(plan, floor=, ceiling=)`` scores the plan on growing prefixes of the
  evaluation batches (``chunks``, fractions of the batches) and stops early when
  a prefix is below ``floor`` (above ``ceiling``, for a lower-is-better metric) by
  more than ``PRUNE_SIGMAS`` standard errors of its mean -- the target is then out of
  reach with high confidence. The standard error comes from the metric's per-position
  or per-sample values (:class:`engine.data.MetricInfo`); sqnr has none and never prunes.
- ``scores(module)`` is the metric and its related metrics
  (:func:`engine.data.related_metrics`) from one pass over the evaluation split.
- ``damage(plan)`` is the output distortion on the calibration batches: the
  KL divergence of the softmax from the float model's for classification
  metrics, the noise-to-signal ratio ``|y_q - y|^2 / |y|^2`` otherwise. Both
  add up approximately over layers quantized together (independent errors),
  which the seeding ILP assumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.data import METRICS, Dataset, check_metric, kl_divergence, related_metrics
from engine.io import predict_payload_bytes
from engine.ir import EMBEDDING_OPS, IRModel, to_graph_module
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import (
    LayerInfo,
    QuantizedModel,
    WeightCache,
    apply,
    fold_batch_norm,
    inventory,
    weight_is_transposed,
)
from search._space import SearchSpace

__all__ = ["PRUNE_SIGMAS", "Evaluation", "Evaluator"]

PRUNE_SIGMAS = 3.0
CLASSIFICATION = tuple(n for n, m in METRICS.items() if m.outputs == "logits")


@dataclass(frozen=True)
class Evaluation:
    """The metric of a plan; ``pruned`` when a prefix ruled the target out."""

    value: float
    samples: int
    pruned: bool
    prefix_values: tuple[float, ...]


class Evaluator:
    """Scores plans of ``ir`` on ``data`` with ``metric``."""

    def __init__(
        self, ir: IRModel, data: Dataset, metric: str, *, chunks: Sequence[float] = (0.25, 1.0)
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"cannot search on metric {metric!r}")
        self.ir, self.data, self.metric = ir, data, metric
        folded, _ = fold_batch_norm(ir)
        self.layers: tuple[LayerInfo, ...] = inventory(folded).layers
        nodes = {n.name: n for n in folded.nodes}
        self.embeddings = {x.name for x in self.layers if nodes[x.node].op in EMBEDDING_OPS}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            shape = layer.weight_shape
            if weight_is_transposed(nodes[layer.node], layer.weight):
                shape = (*shape[:-2], shape[-1], shape[-2])
            self.shapes[layer.name] = shape
        weights = {x.weight for x in self.layers}
        self.other_bytes = sum(
            t.numel() * t.element_size() for k, t in folded.tensors.items() if k not in weights
        )
        self.float_bytes = sum(t.numel() * t.element_size() for t in ir.tensors.values())
        self.calibration = [b.tensors for b in data.batches("calibration")]
        self.batches = list(data.batches("evaluation"))
        self.cache = WeightCache()
        n = len(self.batches)
        self.prefixes = sorted({max(1, min(n, math.ceil(f * n))) for f in chunks} | {n})
        module = to_graph_module(ir)
        with torch.no_grad():
            self.reference = [b.unpad(module(*b.tensors)) for b in self.batches]
            self.calib_reference = [module(*t) for t in self.calibration]
        has_labels = all(b.labels is not None for b in self.batches)
        check_metric(metric, self.reference[0], has_labels=has_labels)
        self.related = related_metrics(metric, self.reference[0], has_labels=has_labels)
        self.baseline = self._score(self.reference, len(self.batches))

    def prime(self, space: SearchSpace) -> None:
        """Collect input Hessians for every layer the space may round with GPTQ in one pass.

        Without this, each plan that adds a GPTQ layer not seen before would
        re-run calibration over the whole model (one pass per layer).
        """
        self.cache.hessian_layers |= {
            layer.name
            for layer in self.layers
            if any(
                "/gptq/" in k
                for k in space.choices(layer.name, embedding=layer.name in self.embeddings)
            )
        }

    def payload_bytes(self, plan: QuantPlan) -> int:
        """Exact tensor bytes of the plan's ``model.mpq``."""
        return predict_payload_bytes(plan, self.shapes, self.other_bytes)

    def layer_bytes(self, name: str, fmt: LayerFormat) -> int:
        """Bytes of one layer's weight in ``fmt`` (codes, scales or codebook, outliers)."""
        return predict_payload_bytes(QuantPlan({name: fmt}), {name: self.shapes[name]}, 0)

    def quantize(self, plan: QuantPlan) -> QuantizedModel:
        return apply(self.ir, plan, self.calibration, cache=self.cache)

    def evaluate(
        self, plan: QuantPlan, *, floor: float | None = None, ceiling: float | None = None
    ) -> Evaluation:
        """The plan's metric on the evaluation split, pruned early below ``floor`` (above
        ``ceiling``)."""
        module = self.quantize(plan).module()
        outs: list[torch.Tensor] = []
        values: list[float] = []
        done = 0
        with torch.no_grad():
            for upto in self.prefixes:
                outs += [b.unpad(module(*b.tensors)) for b in self.batches[done:upto]]
                done = upto
                value = self._score(outs, upto)
                values.append(value)
                if upto < len(self.batches) and self._out_of_reach(value, outs, floor, ceiling):
                    return Evaluation(value, self._rows(upto), True, tuple(values))
        return Evaluation(values[-1], self._rows(len(self.batches)), False, tuple(values))

    def score_module(self, module: torch.nn.Module) -> float:
        """The metric of any module (e.g. an integer-only model) on the whole split."""
        with torch.no_grad():
            outs = [b.unpad(module(*b.tensors)) for b in self.batches]
        return self._score(outs, len(self.batches))

    def scores(self, module: torch.nn.Module) -> dict[str, float]:
        """The metric and its related ones (``self.related``) of ``module``, from one pass."""
        with torch.no_grad():
            outs = [b.unpad(module(*b.tensors)) for b in self.batches]
        return {m: self._score(outs, len(self.batches), metric=m) for m in self.related}

    def damage(self, plan: QuantPlan, *, batches: int = 2) -> float:
        """Output distortion of ``plan`` on the first calibration batches (see module doc)."""
        module = self.quantize(plan).module()
        total = 0.0
        pairs = list(zip(self.calibration, self.calib_reference, strict=True))[:batches]
        with torch.no_grad():
            for t, ref in pairs:
                out = module(*t)
                if self.metric in CLASSIFICATION:
                    total += kl_divergence(out, ref)
                else:
                    total += float(
                        (out - ref).double().square().sum() / ref.double().square().sum()
                    )
        return total / max(1, len(pairs))

    def _rows(self, upto: int) -> int:
        return sum(b.n_valid for b in self.batches[:upto])

    def _score(
        self, outs: Sequence[torch.Tensor], upto: int, *, metric: str | None = None
    ) -> float:
        info = METRICS[metric or self.metric]
        out = torch.cat(list(outs))
        if info.needs_labels:
            labels = torch.cat([b.labels for b in self.batches[:upto] if b.labels is not None])
            return info.fn(out, labels)
        return info.fn(out, torch.cat(self.reference[:upto]))

    def _out_of_reach(
        self,
        value: float,
        outs: Sequence[torch.Tensor],
        floor: float | None,
        ceiling: float | None,
    ) -> bool:
        """True when a prefix's ``value`` misses the target by ``PRUNE_SIGMAS`` standard errors."""
        if floor is None and ceiling is None:
            return False
        margin = PRUNE_SIGMAS * self._stderr(outs, len(outs))
        if floor is not None and value < floor - margin:
            return True
        return ceiling is not None and value > ceiling + margin

    def _stderr(self, outs: Sequence[torch.Tensor], upto: int) -> float:
        """Standard error of the prefix mean (inf where a metric has no per-sample form)."""
        per_sample = METRICS[self.metric].per_sample
        if per_sample is None:
            return math.inf  # sqnr: no per-sample values, never prune
        out = torch.cat(list(outs))
        if METRICS[self.metric].needs_labels:
            other = torch.cat([b.labels for b in self.batches[:upto] if b.labels is not None])
        else:
            other = torch.cat(self.reference[:upto])
        per = per_sample(out, other)
        n = per.numel()
        return float(per.std() / math.sqrt(n)) if n > 1 else math.inf
