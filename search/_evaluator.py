"""Evaluating plans of one model on one dataset: bytes, metric on growing subsets, damage.

One :class:`Evaluator` per process holds the model's IR, the calibration and
evaluation batches, the float model's outputs and a weight cache, so a trial
costs its forward passes plus the layers whose format is new to the cache.

The evaluation samples are cut into a **search split** (``batches``), which trials and
finalists score, and a **held-out split** (``heldout_batches``, ``holdout`` of them,
:func:`engine.data.holdout_split` seeded by ``seed``), which only the chosen plan and
the float model score, so the figure reported on it is not the one plans were chosen
by. The strata are the labels; for ``agreement`` without labels, the float model's
top-1 class on ``[N, C]`` outputs; otherwise none (a seeded random split). ``baseline``
is the float model's metric on the search split, ``heldout_baseline`` on the held-out
one (None when nothing is held out: ``notes`` then says why).

Two execution paths (docs/engine.md, Determinism): trials (``evaluate``) and ``damage``
run the plain float32 graph, fast; the float reference outputs and any module handed to
``score_module`` / ``scores`` / ``heldout_score`` (the written ``model.mpq``, loaded back)
run the exact one, so every reported figure is what ``mpq eval`` gives at any thread count.

- ``payload_bytes(plan)`` is the exact tensor bytes of the ``model.mpq`` the plan
  gives (:func:`engine.io.predict_payload_bytes`), without quantizing.
- ``evaluate(plan, floor=, ceiling=)`` scores the plan on growing prefixes of the
  evaluation batches (``chunks``, fractions of the batches) and stops early when
  a prefix is below ``floor`` (above ``ceiling``, for a lower-is-better metric) by
  more than ``PRUNE_SIGMAS`` standard errors of its mean -- the target is then out of
  reach with high confidence. The standard error comes from the metric's per-position
  or per-sample values (:class:`engine.data.MetricInfo`); sqnr has none and never prunes.
- ``score_module(module, split=...)`` scores any module on the search split, the
  held-out split or the whole evaluation split; ``heldout_score(module)`` adds the
  confidence interval (:func:`engine.data.metric_interval`).
- ``scores(module)`` is the metric and its related metrics
  (:func:`engine.data.related_metrics`) from one pass over a split.
- ``damage(plan)`` is the output distortion on the calibration batches: the
  KL divergence of the softmax from the float model's for classification
  metrics, the noise-to-signal ratio ``|y_q - y|^2 / |y|^2`` otherwise. Both
  add up approximately over layers quantized together (independent errors),
  which the seeding ILP assumes.

Size: over 300 lines: one object owns the model, both splits, the float outputs and the
weight cache, and everything that scores a plan reads all four.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from engine.data import (
    CI_LEVEL,
    METRICS,
    Batch,
    Dataset,
    check_metric,
    evaluate,
    holdout_split,
    kl_divergence,
    metric_interval,
    related_metrics,
)
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

__all__ = ["PRUNE_SIGMAS", "Evaluation", "Evaluator", "HeldoutScore"]

PRUNE_SIGMAS = 3.0
CLASSIFICATION = tuple(n for n, m in METRICS.items() if m.outputs == "logits")


@dataclass(frozen=True)
class Evaluation:
    """The metric of a plan; ``pruned`` when a prefix ruled the target out."""

    value: float
    samples: int
    pruned: bool
    prefix_values: tuple[float, ...]


@dataclass(frozen=True)
class HeldoutScore:
    """A metric on the held-out split, its ``level`` confidence interval and sample count."""

    metric: float
    ci: tuple[float, float] | None
    samples: int
    level: float = CI_LEVEL

    def to_json(self) -> dict[str, Any]:
        ci = None if self.ci is None else list(self.ci)
        return {"metric": self.metric, "ci": ci, "samples": self.samples, "level": self.level}


@dataclass(frozen=True)
class FileScores:
    """What a finished job reports of its file (:meth:`Evaluator.file_scores`).

    Attributes:
        metric: the search metric on the search split.
        metrics: the metric and its related ones on the whole evaluation split.
        heldout: the held-out score, None when nothing is held out.
    """

    metric: float
    metrics: dict[str, float]
    heldout: HeldoutScore | None


ScoredSplit = Literal["search", "heldout", "evaluation"]


class Evaluator:
    """Scores plans of ``ir`` on ``data`` with ``metric``; ``holdout`` of the samples set apart."""

    def __init__(
        self,
        ir: IRModel,
        data: Dataset,
        metric: str,
        *,
        chunks: Sequence[float] = (0.25, 1.0),
        holdout: float = 0.0,
        seed: int = 0,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"cannot search on metric {metric!r}")
        self.ir, self.metric, self.seed = ir, metric, seed
        module = deterministic_module(ir)
        strata: torch.Tensor | None = None  # None: holdout_split takes the labels, if any
        self.stratified_by = "labels" if data.evaluation.labels is not None else "none"
        if holdout > 0 and data.evaluation.labels is None and metric == "agreement":
            top1 = evaluate(module, data, "evaluation").argmax(-1)
            if top1.ndim == 1:  # per-token outputs: a random split
                strata, self.stratified_by = top1, "float top-1"
        search, held, cut = holdout_split(data.evaluation, holdout, seed=seed, strata=strata)
        self.holdout, self.heldout_note = holdout, cut.note
        notes = data.notes if cut.note is None else (*data.notes, cut.note)
        self.whole = replace(data, notes=notes)
        self.data = replace(self.whole, evaluation=search)
        self.heldout_batches: list[Batch] = []
        if held is not None:
            self.heldout_batches = list(replace(data, evaluation=held).batches("evaluation"))
        folded, _ = fold_batch_norm(ir)
        inv = inventory(folded)
        self.layers: tuple[LayerInfo, ...] = inv.layers
        self.total_macs: int = inv.total_macs
        """Multiply-accumulates of the quantizable layers per sample."""
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
        self.batches = list(self.data.batches("evaluation"))
        self.cache = WeightCache()
        n = len(self.batches)
        self.prefixes = sorted({max(1, min(n, math.ceil(f * n))) for f in chunks} | {n})
        self.reference = self._outputs(module, self.batches)
        self.heldout_reference = self._outputs(module, self.heldout_batches)
        with torch.no_grad():
            self.calib_reference = [module(*t) for t in self.calibration]
        has_labels = all(b.labels is not None for b in self.batches)
        check_metric(metric, self.reference[0], has_labels=has_labels)
        self.related = related_metrics(metric, self.reference[0], has_labels=has_labels)
        self.baseline = self._score(self.reference, len(self.batches))
        self.heldout_baseline = self.heldout_score(module)

    def prime(self, space: SearchSpace) -> None:
        """Collect input Hessians for every layer the space may round with GPTQ in one pass.

        Without this, each plan that adds a GPTQ layer not seen before would
        re-run calibration over the whole model (one pass per layer).
        """
        self.cache.hessian_layers |= {
            layer.name
            for layer in self.layers
            if any("/gptq/" in k for k in self.choices(space, layer.name))
        }

    def choices(self, space: SearchSpace, name: str) -> list[str]:
        """The choice keys of layer ``name`` in ``space`` (:meth:`SearchSpace.choices`)."""
        return space.choices(
            name, embedding=name in self.embeddings, inputs=math.prod(self.shapes[name][1:])
        )

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
        module = self.quantize(plan).module(exact=False)  # trials: fast; reports: exact
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

    @property
    def notes(self) -> tuple[str, ...]:
        """Choices made on the data (the file's splits, the evaluation batch, the held-out)."""
        return self.data.notes

    def score_module(self, module: torch.nn.Module, *, split: ScoredSplit = "search") -> float:
        """The metric of any module (e.g. an integer-only model) on a whole split.

        ``split``: ``search`` (what trials score), ``heldout`` (NaN when nothing is held
        out) or ``evaluation`` (both together, batched as ``mpq eval`` batches the file).
        """
        return self.scores(module, split=split, metrics=(self.metric,))[self.metric]

    def scores(
        self,
        module: torch.nn.Module,
        *,
        split: ScoredSplit = "search",
        metrics: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """``metrics`` (default: the metric and its related ones, ``self.related``) of
        ``module`` on a whole ``split`` (see :meth:`score_module`), from one pass."""
        names = tuple(self.related if metrics is None else metrics)
        if split == "heldout" and not self.heldout_batches:
            return {m: math.nan for m in names}
        if split == "search" or (split == "evaluation" and not self.heldout_batches):
            batches, reference = self.batches, self.reference
        elif split == "heldout":
            batches, reference = self.heldout_batches, self.heldout_reference
        else:
            batches = list(self.whole.batches("evaluation"))
            reference = self._outputs(deterministic_module(self.ir), batches)
        outs = self._outputs(module, batches)
        return {m: self._value(outs, batches, reference, metric=m) for m in names}

    def file_scores(self, module: torch.nn.Module) -> FileScores:
        """The search metric, the whole split's metrics and the held-out score of
        ``module``, from one pass over each split.

        The whole evaluation split is the search split and the held-out split together;
        its metrics are computed on their outputs (every metric is a mean or a sum
        over samples). That equals scoring the file batched as ``mpq eval`` batches it
        for a module whose per-sample outputs do not depend on the batch, which
        :func:`~engine.transforms.deterministic_module` gives (its sums are order-free).
        """
        outs = self._outputs(module, self.batches)
        held = self._outputs(module, self.heldout_batches)
        value = self._value(outs, self.batches, self.reference)
        batches = [*self.batches, *self.heldout_batches]
        reference = [*self.reference, *self.heldout_reference]
        metrics = {
            m: self._value([*outs, *held], batches, reference, metric=m) for m in self.related
        }
        return FileScores(value, metrics, self._heldout(held) if held else None)

    def heldout_score(self, module: torch.nn.Module) -> HeldoutScore | None:
        """The metric of ``module`` on the held-out split with its confidence interval.

        The interval is :func:`engine.data.metric_interval` at 95% (Wilson for accuracy
        and agreement, a bootstrap seeded with ``seed`` for cosine and sqnr). None when
        nothing is held out.
        """
        if not self.heldout_batches:
            return None
        return self._heldout(self._outputs(module, self.heldout_batches))

    def _heldout(self, outs: list[torch.Tensor]) -> HeldoutScore:
        """:meth:`heldout_score` from the held-out outputs ``outs``."""
        value = self._value(outs, self.heldout_batches, self.heldout_reference)
        out = torch.cat(outs)
        if METRICS[self.metric].needs_labels:
            target = torch.cat([b.labels for b in self.heldout_batches if b.labels is not None])
        else:
            target = torch.cat(self.heldout_reference)
        ci = metric_interval(self.metric, out, target, seed=self.seed)
        return HeldoutScore(value, ci, int(out.shape[0]))

    def damage(self, plan: QuantPlan, *, batches: int = 2) -> float:
        """Output distortion of ``plan`` on the first calibration batches (see module doc)."""
        module = self.quantize(plan).module(exact=False)
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
        return self._value(outs, self.batches[:upto], self.reference[:upto], metric=metric)

    def _value(
        self,
        outs: Sequence[torch.Tensor],
        batches: Sequence[Batch],
        reference: Sequence[torch.Tensor],
        *,
        metric: str | None = None,
    ) -> float:
        """``metric`` (default: the search's) of ``outs`` (one per batch) against the labels
        or the float outputs."""
        info = METRICS[metric or self.metric]
        out = torch.cat(list(outs))
        if info.needs_labels:
            labels = torch.cat([b.labels for b in batches if b.labels is not None])
            return info.fn(out, labels)
        return info.fn(out, torch.cat(list(reference)))

    @staticmethod
    def _outputs(module: torch.nn.Module, batches: Sequence[Batch]) -> list[torch.Tensor]:
        with torch.no_grad():
            return [b.unpad(module(*b.tensors)) for b in batches]

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
