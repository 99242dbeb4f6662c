"""Hold out part of the evaluation split: a seeded, stratified search / held-out split.

A search scores many plans on the same samples and keeps the best, so the metric it
chose by is optimistic for new data. :func:`holdout_split` sets a fraction of the
evaluation samples apart; only the chosen plan (and the float model) is scored on them.

The split of ``n`` samples with held-out fraction ``f``:

- ``k = floor(f * n + 1/2)`` samples are held out (``f * n`` rounded half up);
- with strata (labels, or the float model's top-1 class), stratum ``c`` of ``n_c``
  samples gives ``q_c = k * n_c / n`` samples, rounded by largest remainder: every
  stratum gets ``floor(q_c)``, and the ``k - sum floor(q_c)`` left go one each to the
  strata with the largest ``q_c - floor(q_c)`` (ties: the smaller stratum value first);
- within a stratum the held-out samples are the first of a permutation drawn from a
  ``torch.Generator`` seeded with ``seed`` (one generator, strata in increasing order),
  so a seed gives the same split on every machine and run.

When either side would have fewer than :data:`MIN_SIDE` samples, nothing is held out
and the split's ``note`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engine.data._dataset import Split

__all__ = ["MIN_SIDE", "HoldoutSplit", "holdout_indices", "holdout_split"]

MIN_SIDE = 2
"""Fewest samples either side of a split may have (else nothing is held out)."""


@dataclass(frozen=True)
class HoldoutSplit:
    """Indices into the evaluation split: searched on, held out (both int64, increasing).

    ``heldout`` is empty when nothing is held out; ``note`` then says why (None when the
    fraction asked was 0).
    """

    search: torch.Tensor
    heldout: torch.Tensor
    note: str | None = None

    @property
    def active(self) -> bool:
        """Whether any sample is held out."""
        return self.heldout.numel() > 0


def holdout_indices(
    n: int, fraction: float, *, seed: int, strata: torch.Tensor | None = None
) -> HoldoutSplit:
    """Split sample indices ``0..n-1`` into search and held-out (see the module docstring).

    Args:
        n: number of samples.
        fraction: share held out, in ``[0, 1)``; 0 holds nothing out.
        seed: seeds the permutation within each stratum.
        strata: integer ``[n]`` (labels or predicted classes), or None for one stratum.

    Raises:
        ValueError: ``fraction`` outside ``[0, 1)`` or ``strata`` not of shape ``[n]``.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if strata is not None and tuple(strata.shape) != (n,):
        raise ValueError(f"strata must have shape ({n},), got {tuple(strata.shape)}")
    everything = torch.arange(n, dtype=torch.int64)
    none = torch.empty(0, dtype=torch.int64)
    if fraction == 0:
        return HoldoutSplit(everything, none)
    k = math.floor(fraction * n + 0.5)
    if k < MIN_SIDE or n - k < MIN_SIDE:
        return HoldoutSplit(
            everything,
            none,
            f"held-out split off: holding out {fraction:g} of {n} evaluation samples leaves "
            f"{k} held out and {n - k} to search on; each side needs at least {MIN_SIDE}. "
            "Every figure is on the search split; add evaluation samples for a held-out figure",
        )
    keys = torch.zeros(n, dtype=torch.int64) if strata is None else strata.to(torch.int64)
    values, counts = torch.unique(keys, sorted=True, return_counts=True)
    quotas = [k * int(c) / n for c in counts]
    take = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - take[i]), i))
    for i in by_remainder[: k - sum(take)]:
        take[i] += 1
    gen = torch.Generator().manual_seed(seed)
    held: list[torch.Tensor] = []
    for value, t in zip(values.tolist(), take, strict=True):
        members = torch.nonzero(keys == value).flatten()
        held.append(members[torch.randperm(members.numel(), generator=gen)[:t]])
    heldout = torch.sort(torch.cat(held)).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[heldout] = False
    return HoldoutSplit(everything[mask], heldout)


def holdout_split(
    split: Split, fraction: float, *, seed: int, strata: torch.Tensor | None = None
) -> tuple[Split, Split | None, HoldoutSplit]:
    """``split`` cut into (search, held-out or None, the indices); strata default to labels.

    See :func:`holdout_indices`; ``strata=None`` stratifies by ``split.labels`` when the
    split has labels, else draws at random.
    """
    if strata is None:
        strata = split.labels
    cut = holdout_indices(split.num_samples, fraction, seed=seed, strata=strata)
    if not cut.active:
        return split, None, cut
    return split.select(cut.search), split.select(cut.heldout), cut
