"""Metrics over collected model outputs, and the loop that collects them.

Every metric is a pure function of two tensors with ``N`` samples in the first
dimension (the quantized model's output first, then the labels or the float
model's output) and returns a Python float. Arithmetic is in float64.
Classification metrics take logits ``[..., C]`` (class scores on the last
dimension, e.g. ``[N, C]`` or per token ``[N, T, C]``) and average over every
position; ties in an argmax go to the lowest class index, as in :func:`torch.argmax`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from engine.data._dataset import Dataset, SplitName
from engine.errors import InvalidLabelsError

__all__ = [
    "METRICS",
    "MetricInfo",
    "accuracy",
    "agreement",
    "cosine",
    "evaluate",
    "kl_divergence",
    "sqnr",
]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy: ``mean_p [argmax_c logits[p, c] == labels[p]]`` over positions ``p``.

    Args:
        logits: float ``[..., C]``.
        labels: integer class indices in ``[0, C)``, shape ``logits.shape[:-1]``.

    Raises:
        InvalidLabelsError: labels of the wrong shape or outside ``[0, C)``.
    """
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
    hits = logits.argmax(-1) == labels
    return float(hits.to(torch.float64).mean())


def agreement(logits: torch.Tensor, ref_logits: torch.Tensor) -> float:
    """Top-1 agreement: ``mean_p [argmax_c logits[p, c] == argmax_c ref_logits[p, c]]``."""
    _check_pair(logits, ref_logits)
    _check_logits(logits)
    same = logits.argmax(-1) == ref_logits.argmax(-1)
    return float(same.to(torch.float64).mean())


def cosine(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean per-sample cosine similarity ``mean_i <a_i, b_i> / (|a_i| |b_i|)``.

    ``a_i`` and ``b_i`` are sample ``i`` of ``out`` and ``ref`` flattened. A pair of
    zero vectors counts as 1 (identical), one zero vector against a non-zero one as 0.
    """
    _check_pair(out, ref)
    a, b = _rows(out), _rows(ref)
    dot = (a * b).sum(1)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = dot / (na * nb).clamp_min(torch.finfo(torch.float64).tiny)
    cos = torch.where((na == 0) & (nb == 0), torch.ones_like(cos), cos)
    return float(cos.mean())


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
    terms with ``q = 0`` count 0. Clamped at 0 against rounding; 0 for identical logits.
    """
    _check_pair(logits, ref_logits)
    _check_logits(logits)
    log_s = F.log_softmax(logits.to(torch.float64), dim=-1)
    log_q = F.log_softmax(ref_logits.to(torch.float64), dim=-1)
    q = log_q.exp()
    terms = torch.where(q > 0, q * (log_q - log_s), torch.zeros_like(q))
    return max(0.0, float(terms.sum(-1).mean()))


class MetricInfo(NamedTuple):
    """A metric: ``fn(out, labels_or_ref) -> float``; its direction; whether it needs labels."""

    fn: Callable[[torch.Tensor, torch.Tensor], float]
    higher_is_better: bool
    needs_labels: bool


METRICS: dict[str, MetricInfo] = {
    "accuracy": MetricInfo(accuracy, True, True),
    "agreement": MetricInfo(agreement, True, False),
    "cosine": MetricInfo(cosine, True, False),
    "sqnr": MetricInfo(sqnr, True, False),
    "kl_divergence": MetricInfo(kl_divergence, False, False),
}


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


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float64).reshape(t.shape[0], -1)
