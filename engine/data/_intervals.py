"""Confidence intervals of a metric over samples: Wilson for proportions, else bootstrap.

:func:`metric_interval` gives a two-sided interval at ``level`` (default 95%) for a
metric measured on ``N`` samples:

- ``accuracy`` / ``agreement`` with one prediction per sample: the Wilson score
  interval of the proportion of hits (:func:`wilson_interval`). With several positions
  per sample (``[N, T, C]`` logits) the positions of one sample are not independent, so
  the per-sample means are bootstrapped instead.
- ``cosine``: a seeded bootstrap percentile interval of the mean per-sample cosine
  (each as :func:`engine.data.cosine` computes it; :func:`bootstrap_interval`), chosen
  over a t-interval because the values pile up just below 1, where a symmetric interval
  would run past the bound.
- ``sqnr``: a seeded bootstrap over samples of ``10 log10(sum signal / sum noise)``
  (the ratio of sums, as :func:`engine.data.sqnr` computes it).

Any other metric has no interval here (None).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CI_LEVEL",
    "bootstrap_interval",
    "metric_interval",
    "wilson_interval",
]

CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 2000


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(hits: int, n: int, *, level: float = CI_LEVEL) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p = hits / n``.

    With ``z`` the standard normal quantile at ``(1 + level) / 2`` (1.95996 for 95%)::

        center = (p + z^2 / (2n)) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

    and the interval is ``[center - half, center + half]``, clipped to ``[0, 1]``
    (e.g. 8 of 10: ``[0.4902, 0.9433]``).

    Raises:
        ValueError: ``n < 1`` or ``hits`` outside ``[0, n]``.
    """
    if n < 1 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n and n >= 1, got hits={hits}, n={n}")
    z, p = _z(level), hits / n
    z2n = z * z / n
    center = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def bootstrap_interval(
    values: torch.Tensor,
    *,
    seed: int,
    level: float = CI_LEVEL,
    resamples: int = BOOTSTRAP_RESAMPLES,
    weights: torch.Tensor | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(values)`` (or ``sum(values) / sum(weights)``).

    ``resamples`` times, ``N`` sample indices are drawn with replacement (a
    ``torch.Generator`` seeded with ``seed``) and the statistic recomputed; the interval
    is the ``(1 - level) / 2`` and ``(1 + level) / 2`` order statistics of the sorted
    replicates (lower: index ``floor(a (B - 1))``, upper: ``ceil((1 - a)(B - 1))``, no
    interpolation, so infinite replicates stay well defined).

    Args:
        values: float ``[N]``, one value per sample.
        seed: seeds the resampling.
        weights: float ``[N]``; with it the statistic is ``sum(values) / sum(weights)``.

    Raises:
        ValueError: no values, or ``weights`` of another shape.
    """
    v = values.to(torch.float64).flatten()
    n = v.numel()
    if n == 0:
        raise ValueError("need at least one value")
    if weights is not None and tuple(weights.shape) != tuple(values.shape):
        raise ValueError(f"weights {tuple(weights.shape)} must match values {tuple(values.shape)}")
    _z(level)
    gen = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n, (resamples, n), generator=gen)
    if weights is None:
        stats = v[index].mean(1)
    else:
        stats = v[index].sum(1) / weights.to(torch.float64).flatten()[index].sum(1)
    stats = torch.sort(stats).values
    a = (1 - level) / 2
    lo = stats[math.floor(a * (resamples - 1))]
    hi = stats[math.ceil((1 - a) * (resamples - 1))]
    return float(lo), float(hi)


def metric_interval(
    metric: str,
    out: torch.Tensor,
    target: torch.Tensor,
    *,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> tuple[float, float] | None:
    """The ``level`` interval of ``metric(out, target)`` over its ``N`` samples (module doc).

    ``target`` is what the metric compares with: labels for ``accuracy``, the float
    model's outputs otherwise. None for a metric without an interval here.
    """
    n = out.shape[0]
    if metric in ("accuracy", "agreement"):
        truth = target if metric == "accuracy" else target.argmax(-1)
        hits = (out.argmax(-1) == truth).to(torch.float64).reshape(n, -1)
        if hits.shape[1] == 1:
            return wilson_interval(int(hits.sum()), n, level=level)
        return bootstrap_interval(hits.mean(1), seed=seed, level=level)
    a = out.to(torch.float64).reshape(n, -1)
    b = target.to(torch.float64).reshape(n, -1)
    if metric == "cosine":
        na, nb = a.norm(dim=1), b.norm(dim=1)
        cos = (a * b).sum(1) / (na * nb).clamp_min(torch.finfo(torch.float64).tiny)
        both_zero = (na == 0) & (nb == 0)
        cos = torch.where(both_zero, torch.ones_like(cos), cos)
        return bootstrap_interval(cos, seed=seed, level=level)
    if metric == "sqnr":
        signal, noise = b.square().sum(1), (a - b).square().sum(1)
        lo, hi = bootstrap_interval(signal, seed=seed, level=level, weights=noise)
        # signal / noise -> dB; the log is monotone, so the order statistics carry over.
        return _db(lo), _db(hi)
    return None


def _db(ratio: float) -> float:
    if math.isnan(ratio):
        return math.inf  # 0 / 0: no signal and no noise in any resampled sample
    return math.inf if ratio == math.inf else (-math.inf if ratio <= 0 else 10 * math.log10(ratio))
