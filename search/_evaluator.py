"""Evaluating plans of one model on one dataset: bytes, metric on growing subsets, damage.

One :class:`Evaluator` per process holds the model's IR, the calibration and
evaluation batches, the float model's outputs and a weight cache, so a trial
costs its forward passes plus the layers whose format is new to the cache.

- ``payload_bytes(plan)`` is the exact tensor bytes of the ``model.mpq`` the plan
  gives (:func:`engine.io.predict_payload_bytes`), without quantizing.
- ``evaluate(plan, floor)`` scores the plan on growing prefixes of the
  evaluation batches (``chunks``, fractions of the batches) and stops early when
  a prefix is below ``floor`` by more than ``PRUNE_SIGMAS`` standard errors of
  its mean -- the target is then out of reach with high confidence.
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
import torch.nn.functional as F

from engine.data import METRICS, Dataset, kl_divergence
from engine.io import predict_payload_bytes
from engine.ir import EMBEDDING_OPS, IRModel
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import (
    LayerInfo,
    QuantizedModel,
    WeightCache,
    apply,
    deterministic_module,
    fold_batch_norm,
    inventory,
    weight_is_transposed,
)
from search._space import SearchSpace

__all__ = ["PRUNE_SIGMAS", "Evaluation", "Evaluator"]

PRUNE_SIGMAS = 3.0
CLASSIFICATION = ("accuracy", "agreement")


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
        if metric not in METRICS or not METRICS[metric].higher_is_better:
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
        module = deterministic_module(ir)
        with torch.no_grad():
            self.reference = [b.unpad(module(*b.tensors)) for b in self.batches]
            self.calib_reference = [module(*t) for t in self.calibration]
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

    def evaluate(self, plan: QuantPlan, *, floor: float | None = None) -> Evaluation:
        """The plan's metric on the evaluation split, pruned early below ``floor``."""
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
                early = floor is not None and upto < len(self.batches)
                if early and value < floor - PRUNE_SIGMAS * self._stderr(outs, upto):  # type: ignore[operator]
                    return Evaluation(value, self._rows(upto), True, tuple(values))
        return Evaluation(values[-1], self._rows(len(self.batches)), False, tuple(values))

    def score_module(self, module: torch.nn.Module) -> float:
        """The metric of any module (e.g. an integer-only model) on the whole split."""
        with torch.no_grad():
            outs = [b.unpad(module(*b.tensors)) for b in self.batches]
        return self._score(outs, len(self.batches))

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

    def _score(self, outs: Sequence[torch.Tensor], upto: int) -> float:
        info = METRICS[self.metric]
        out = torch.cat(list(outs))
        if info.needs_labels:
            labels = torch.cat([b.labels for b in self.batches[:upto] if b.labels is not None])
            return info.fn(out, labels)
        return info.fn(out, torch.cat(self.reference[:upto]))

    def _stderr(self, outs: Sequence[torch.Tensor], upto: int) -> float:
        """Standard error of the prefix mean (0 where a metric has no per-sample form)."""
        out = torch.cat(list(outs))
        ref = torch.cat(self.reference[:upto])
        if self.metric == "accuracy":
            labels = torch.cat([b.labels for b in self.batches[:upto] if b.labels is not None])
            per = (out.argmax(-1) == labels).double()
        elif self.metric == "agreement":
            per = (out.argmax(-1) == ref.argmax(-1)).double()
        elif self.metric == "cosine":
            per = F.cosine_similarity(out.flatten(1).double(), ref.flatten(1).double(), dim=1)
        else:
            return math.inf  # sqnr: no per-sample values, never prune
        n = per.numel()
        return float(per.std() / math.sqrt(n)) if n > 1 else math.inf
