"""Metrics over collected model outputs, and the loop that collects them.

Every metric is a pure function of two tensors with ``N`` samples in the first
dimension (the quantized model's output first, then the labels or the float
model's output) and returns a Python float. Arithmetic is in float64.
Classification metrics take logits ``[..., C]`` (class scores on the last
dimension, e.g. ``[N, C]`` or per token ``[N, T, C]``) and average over every
position; ties in an argmax go to the lowest class index, as in :func:`torch.argmax`.

:data:`METRICS` describes each metric (:class:`MetricInfo`): its direction, whether it
needs labels, its per-position or per-sample values (whose mean is the metric; the
search prunes on their standard error), the outputs it applies to and the classes it
needs. :func:`check_metric` refuses a metric the outputs or the data cannot serve;
:func:`related_metrics` lists the metrics reported beside a job's own.

Size: over 300 lines because the seven metrics, their per-sample forms and the one
table describing them belong together (each is a few lines; splitting them would
scatter the table's functions over modules).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from engine.data._dataset import Dataset, SplitName
from engine.errors import InvalidLabelsError, MetricNotApplicableError

__all__ = [
    "METRICS",
    "TOP_K",
    "MetricInfo",
    "accuracy",
    "agreement",
    "check_metric",
    "cosine",
    "evaluate",
    "kl_divergence",
    "nmse",
    "related_metrics",
    "sqnr",
    "top5",
]

TOP_K = 5
"""``top5`` counts a hit when the float model's top-1 class is among this many best."""


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy: ``mean_p [argmax_c logits[p, c] == labels[p]]`` over positions ``p``.

    Args:
        logits: float ``[..., C]``.
        labels: integer class indices in ``[0, C)``, shape ``logits.shape[:-1]``.

    Raises:
        InvalidLabelsError: labels of the wrong shape or outside ``[0, C)``.
    """
    return float(_accuracy_hits(logits, labels).mean())


def _accuracy_hits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``[argmax_c logits[p, c] == labels[p]]`` per position, float64, flattened."""
    _check_logits(logits)
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise InvalidLabelsError(
            f"labels have shape {tuple(labels.shape)} but the model's outputs "
            f"{tuple(logits.shape)} need {tuple(logits.shape[:-1])}: one label per output row"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise InvalidLabelsError(f"labels have dtype {labels.dtype}; they must be integers")
    classes = logits.shape[-1]
    if int(labels.min()) < 0 or int(labels.max()) >= classes:
        raise InvalidLabelsError(
            f"labels span [{int(labels.min())}, {int(labels.max())}] but the model outputs "
            f"{classes} classes; labels must lie in [0, {classes - 1}]"
        )
    return (logits.argmax(-1) == labels).to(torch.float64).flatten()


def agreement(logits: torch.Tensor, ref_logits: torch.Tensor) -> float:
    """Top-1 agreement: ``mean_p [argmax_c logits[p, c] == argmax_c ref_logits[p, c]]``."""
    return float(_agreement_hits(logits, ref_logits).mean())


def _agreement_hits(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    _check_pair(logits, ref_logits)
    _check_logits(logits)
    return (logits.argmax(-1) == ref_logits.argmax(-1)).to(torch.float64).flatten()


def top5(logits: torch.Tensor, ref_logits: torch.Tensor) -> float:
    """Top-5 agreement: the fraction of positions whose float top-1 class is in the model's top 5.

    With ``r[p] = argmax_c ref_logits[p, c]`` and ``s = logits[p]``, the rank of ``r`` is
    ``#{c : s[c] > s[r]} + #{c < r : s[c] == s[r]}`` (ties go to the lower class index,
    as in an argmax), and position ``p`` is a hit when that rank is below 5. So ``top5 >=
    agreement``, and both are 1 for identical logits. Labels play no part (see the README:
    top-5 *accuracy* is not offered).

    Raises:
        MetricNotApplicableError: fewer than 5 classes.
    """
    return float(_top5_hits(logits, ref_logits).mean())


def _top5_hits(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    _check_pair(logits, ref_logits)
    _check_logits(logits)
    _check_classes("top5", logits.shape[-1], TOP_K)
    r = ref_logits.argmax(-1, keepdim=True)
    s_r = logits.gather(-1, r)
    index = torch.arange(logits.shape[-1], device=logits.device)
    rank = (logits > s_r).sum(-1) + ((logits == s_r) & (index < r)).sum(-1)
    return (rank < TOP_K).to(torch.float64).flatten()


def cosine(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean per-sample cosine similarity ``mean_i <a_i, b_i> / (|a_i| |b_i|)``.

    ``a_i`` and ``b_i`` are sample ``i`` of ``out`` and ``ref`` flattened. A pair of
    zero vectors counts as 1 (identical), one zero vector against a non-zero one as 0.
    """
    return float(_cosine_per_sample(out, ref).mean())


def _cosine_per_sample(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    _check_pair(out, ref)
    a, b = _rows(out), _rows(ref)
    dot = (a * b).sum(1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = dot / (na * nb).clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where((na == 0) & (nb == 0), torch.ones_like(cos), cos)


def nmse(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Normalized mean squared error ``mean_i |a_i - b_i|^2 / |b_i|^2`` (lower is better).

    ``a_i`` and ``b_i`` are sample ``i`` of ``out`` and of the reference ``ref``
    flattened. Zero-vector rule: a zero reference sample counts 0 when ``a_i`` is zero
    too (identical) and 1 otherwise (as much error as an all-zero output has against any
    non-zero reference), so one such sample cannot make the mean infinite. 0 for
    identical outputs; not symmetric.
    """
    return float(_nmse_per_sample(out, ref).mean())


def _nmse_per_sample(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    _check_pair(out, ref)
    a, b = _rows(out), _rows(ref)
    err = (a - b).square().sum(1)
    signal = b.square().sum(1)
    ratio = err / signal.clamp_min(torch.finfo(torch.float64).tiny)
    return torch.where(signal == 0, (err > 0).to(torch.float64), ratio)


def sqnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum ref^2 / sum (out - ref)^2)``.

    Sums run over every element; ``+inf`` when ``out == ref`` exactly.
    """
    _check_pair(out, ref)
    r = ref.to(torch.float64)
    noise = float(((out.to(torch.float64) - r) ** 2).sum())
    if noise == 0.0:
        return float("inf")
    signal = float((r**2).sum())
    return float("-inf") if signal == 0.0 else 10.0 * math.log10(signal / noise)


def kl_divergence(logits: torch.Tensor, ref_logits: torch.Tensor) -> float:
    """Mean KL divergence of the model's softmax from the reference's, in nats.

    ``mean_p sum_c q[p, c] (log q[p, c] - log s[p, c])`` with ``q = softmax(ref_logits)``,
    ``s = softmax(logits)`` over the last dimension, via ``log_softmax`` for stability;
    terms with ``q = 0`` count 0. Each position's sum is clamped at 0 against rounding;
    0 for identical logits.
    """
    return float(_kl_per_position(logits, ref_logits).mean())


def _kl_per_position(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    _check_pair(logits, ref_logits)
    _check_logits(logits)
    log_s = F.log_softmax(logits.to(torch.float64), dim=-1)
    log_q = F.log_softmax(ref_logits.to(torch.float64), dim=-1)
    q = log_q.exp()
    terms = torch.where(q > 0, q * (log_q - log_s), torch.zeros_like(q))
    return terms.sum(-1).clamp_min(0.0).flatten()


PerSample = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class MetricInfo(NamedTuple):
    """A metric and what the search and the front doors need to know of it.

    Attributes:
        fn: ``fn(out, labels_or_ref) -> float``.
        higher_is_better: the direction (accuracy up; kl, nmse down).
        needs_labels: compares with labels rather than the float model's outputs.
        per_sample: ``(out, labels_or_ref) -> [n]`` float64 values whose mean is ``fn``
            (per position for logits, per sample otherwise); None where the metric is no
            mean (sqnr).
        outputs: ``logits`` (class scores on the last dimension) or ``any`` output.
        min_classes: the fewest classes (last-dimension size) the metric is defined for.
    """

    fn: Callable[[torch.Tensor, torch.Tensor], float]
    higher_is_better: bool
    needs_labels: bool
    per_sample: PerSample | None = None
    outputs: Literal["logits", "any"] = "any"
    min_classes: int = 1


METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo(accuracy, True, True, _accuracy_hits, "logits", 2),
    "agreement": MetricInfo(agreement, True, False, _agreement_hits, "logits", 2),
    "top5": MetricInfo(top5, True, False, _top5_hits, "logits", TOP_K),
    "kl": MetricInfo(kl_divergence, False, False, _kl_per_position, "logits", 2),
    "cosine": MetricInfo(cosine, True, False, _cosine_per_sample),
    "nmse": MetricInfo(nmse, False, False, _nmse_per_sample),
    "sqnr": MetricInfo(sqnr, True, False),
}


def check_metric(metric: str, outputs: torch.Tensor, *, has_labels: bool) -> None:
    """Refuse a metric that these model outputs (one batch is enough) or the data cannot serve.

    Raises:
        MetricNotApplicableError: an unknown metric, a label metric without labels, or a
            classification metric on outputs with too few classes.
    """
    if metric not in METRICS:
        raise MetricNotApplicableError(
            f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}"
        )
    info = METRICS[metric]
    if info.needs_labels and not has_labels:
        raise MetricNotApplicableError(
            f"metric {metric!r} needs a 'labels' array in the data file; add one or use "
            "agreement, top5 or kl (against the float model)"
        )
    if info.outputs == "logits":
        if outputs.ndim < 2 or not outputs.is_floating_point():
            raise MetricNotApplicableError(
                f"metric {metric!r} needs class scores [N, ..., C]; the model outputs "
                f"{outputs.dtype} {tuple(outputs.shape)}: use cosine, nmse or sqnr"
            )
        _check_classes(metric, outputs.shape[-1], info.min_classes)


def related_metrics(metric: str, outputs: torch.Tensor, *, has_labels: bool) -> tuple[str, ...]:
    """The metrics reported beside ``metric``: those of its kind these outputs can serve.

    Classification metrics (``accuracy`` with labels, ``agreement``, ``top5`` with at
    least 5 classes, ``kl``) go together, and so do output metrics (``cosine``,
    ``nmse``, ``sqnr``); ``metric`` itself comes first.
    """
    kind = METRICS[metric].outputs
    out = [metric]
    for name, info in METRICS.items():
        if name == metric or info.outputs != kind:
            continue
        try:
            check_metric(name, outputs, has_labels=has_labels)
        except MetricNotApplicableError:
            continue
        out.append(name)
    return tuple(out)


def evaluate(
    module: Callable[..., torch.Tensor],
    data: Dataset,
    split: SplitName,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Run ``module(*inputs)`` over ``data``'s ``split`` and concatenate the outputs.

    Batches come from :meth:`Dataset.batches` (default: the model's static batch
    size); each output's padding rows are dropped, so the result has one row per
    sample, in dataset order. Runs under :func:`torch.no_grad`.
    """
    outs: list[torch.Tensor] = []
    with torch.no_grad():
        for batch in data.batches(split, batch_size):
            out = module(*batch.tensors)
            rows = batch.tensors[0].shape[0]
            if not isinstance(out, torch.Tensor) or out.ndim == 0 or out.shape[0] != rows:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"module must return a tensor with {rows} rows, got {got}")
            outs.append(batch.unpad(out).detach())
    return torch.cat(outs)


def _check_pair(out: torch.Tensor, ref: torch.Tensor) -> None:
    if out.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(out.shape)} vs reference {tuple(ref.shape)}")
    if out.ndim == 0 or out.shape[0] == 0:
        raise ValueError(f"need at least one sample, got shape {tuple(out.shape)}")


def _check_logits(logits: torch.Tensor) -> None:
    if not logits.is_floating_point() or logits.ndim < 1 or logits.numel() == 0:
        raise ValueError(
            f"logits must be a non-empty float tensor [..., C], got {logits.dtype} "
            f"{tuple(logits.shape)}"
        )


def _check_classes(metric: str, classes: int, needed: int) -> None:
    if classes < needed:
        raise MetricNotApplicableError(
            f"metric {metric!r} needs at least {needed} classes, but the model outputs "
            f"{classes} scores per position; use "
            + ("agreement or kl" if needed > 2 else "cosine, nmse or sqnr")
        )


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64).reshape(t.shape[0], -1)
