"""1-D k-means (Lloyd) for codebook quantization, exploiting that the data lies on a line.

Objective, for elements ``x_i`` with weights ``w_i >= 0`` (all 1 by default) and
centroids ``c_0 <= ... <= c_{k-1}``::

    inertia = sum_i w_i * (x_i - c[a_i])**2,    a_i = argmin_j |x_i - c_j|

In one dimension the nearest-centroid cells are intervals cut at the midpoints
``m_j = (c_j + c_{j+1}) / 2``: ``x`` goes to cluster ``j`` iff ``m_{j-1} < x <= m_j``
(an exact tie goes to the lower index, as ``argmin`` does). So once the elements
are sorted (``s``, weights ``w``), one Lloyd step is

    b_j = #{s <= m_j}                                     (searchsorted, O(k log n))
    c_j = (S[b_j] - S[b_{j-1}]) / (W[b_j] - W[b_{j-1}])   (O(k))

with prefix sums ``W = cumsum(w)``, ``S = cumsum(w * s)``: one O(n log n) sort,
then O(k log n) per step and never an ``n x k`` distance matrix. The final
assignment of the unsorted elements is O(n) too: a uniform bucket table over the
midpoints' range narrows each element to at most a few candidate midpoints.

Initialisation is linear, as in Deep Compression (Han et al., 2016): ``k``
centroids evenly spaced over ``[min, max]`` of the positively weighted elements
(:func:`linear_init`). Empty clusters are relocated as scikit-learn's Lloyd does:
the ``e`` empty centroids move onto the ``e`` distinct values farthest from the
centroid they were assigned to (ties: the smaller value), which leave their old
clusters. Assignment, mean update and relocation each cannot increase the
inertia, so it is non-increasing over iterations.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["kmeans_1d", "linear_init"]

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]
_Float = npt.NDArray[np.floating]

_MAX_PER_BUCKET = 4
"""Midpoints one bucket of the assignment table may hold before searchsorted is used."""
_F32_MAX = float(np.finfo(np.float32).max)


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _flat(name: str, t: torch.Tensor) -> _Float:
    """``t`` flattened to numpy: float32 if that is exact (it sorts faster), else float64."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {type(t).__name__}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; k-means needs at least one element")
    dtype = torch.float32 if t.element_size() <= 4 else torch.float64
    arr: _Float = t.detach().to("cpu", dtype).reshape(-1).numpy()
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} has {bad} NaN/Inf element(s); clean or clamp it first")
    return arr


def _sorted(x: torch.Tensor, weights: torch.Tensor | None) -> tuple[_Float, _Float, _F64 | None]:
    """Validate; return ``(x flat, positively weighted elements sorted, their weights)``.

    Both arrays of ``x`` are float32 or both float64; the weights are ``None`` when
    all are 1 (no ``weights`` given).
    """
    xn = _flat("x", x)
    if xn.dtype == np.float64 and np.abs(xn).max() > _F32_MAX:
        raise ValueError("x has values beyond the float32 range the centroids are returned in")
    if weights is None:
        return xn, np.sort(xn), None
    if weights.shape != x.shape:
        raise ValueError(
            f"weights shape {tuple(weights.shape)} must equal x shape {tuple(x.shape)}"
        )
    wn = _flat("weights", weights).astype(np.float64)
    if (wn < 0).any():
        raise ValueError(f"weights must be >= 0, min is {float(wn.min())!r}")
    keep = wn > 0
    if not keep.any():
        raise ValueError("weights are all zero; at least one element needs weight > 0")
    order = np.argsort(xn[keep], kind="stable")
    return xn, xn[keep][order], wn[keep][order]


def _linspace(lo: float, hi: float, k: int) -> _F64:
    if k == 1:
        return np.array([(lo + hi) / 2])
    return np.linspace(lo, hi, k)


def linear_init(x: torch.Tensor, k: int, *, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Deep Compression's linear initialisation: ``c_j = lo + (hi - lo) * j / (k - 1)``.

    Args:
        x: Any-shape floating tensor, all finite.
        k: Number of centroids, ``>= 1``.
        weights: Optional nonnegative per-element weights, same shape as ``x``;
            ``lo, hi`` are the min and max over the elements with positive weight.

    Returns:
        float64 ``[k]``, ascending (``np.linspace(lo, hi, k)``); for ``k == 1``
        the midpoint ``(lo + hi) / 2``.
    """
    _check_int("k", k, 1)
    _, s, _ = _sorted(x, weights)
    return torch.from_numpy(_linspace(float(s[0]), float(s[-1]), k))


def _relocate(
    s: _Float, w: _F64 | None, idx: _I64, c_old: _F64, new: _F64, wc: _F64, sc: _F64
) -> _F64:
    """Move the empty clusters' centroids onto far values; return the sorted centroids.

    ``idx`` are the cluster boundaries in ``s`` under ``c_old``; ``new`` holds the
    means of the non-empty clusters, whose weights and weighted sums are ``wc, sc``.
    """
    k = c_old.size
    counts = idx[1:] - idx[:-1]
    empty = np.flatnonzero(~(wc > 0))
    labels = np.repeat(np.arange(k), counts)
    dist = (s - c_old[labels]) ** 2
    dist[1:][s[1:] == s[:-1]] = -1.0  # one candidate per distinct value
    n = empty.size
    # The n largest distances, ties to the smaller value; all are > 0, since more
    # than k distinct values means more than n of them sit off their centroid.
    thresh = np.partition(dist, dist.size - n)[dist.size - n]
    picked = np.concatenate((np.flatnonzero(dist > thresh), np.flatnonzero(dist == thresh)))[:n]
    donors = labels[picked]
    wp = np.ones(n) if w is None else w[picked]
    taken_w = np.bincount(donors, weights=wp, minlength=k)
    taken_s = np.bincount(donors, weights=wp * s[picked], minlength=k)
    left = counts - np.bincount(donors, minlength=k)
    out = new.copy()
    # A donor emptied of all its elements keeps its mean and is relocated next step.
    moved = (taken_w > 0) & (left > 0)
    out[moved] = (sc[moved] - taken_s[moved]) / (wc[moved] - taken_w[moved])
    out[empty] = s[picked]
    return np.sort(out)


def _lloyd(s: _Float, w: _F64 | None, c: _F64, iters: int, tol: float) -> _F64:
    """Run up to ``iters`` Lloyd steps on sorted ``s`` (weights ``w``) from centroids ``c``.

    Stops early once no cluster was empty and no centroid moved by more than ``tol``.
    A float32 ``s`` is searched with the midpoints rounded down to float32, which
    gives the same counts (``s <= m`` iff ``s <= m'``) and halves the memory touched.
    """
    k, n = c.size, s.size
    f32 = s.dtype == np.float32
    scum = np.zeros(n + 1)
    np.cumsum(s if w is None else w * s, dtype=np.float64, out=scum[1:])
    wcum = None
    if w is not None:
        wcum = np.zeros(n + 1)
        np.cumsum(w, out=wcum[1:])
    idx = np.zeros(k + 1, dtype=np.int64)
    idx[k] = n
    means = False
    for _ in range(iters):
        mids = c[:-1] + c[1:]
        mids *= 0.5
        if f32:
            q = mids.astype(np.float32)
            np.nextafter(q, np.float32(-np.inf), out=q, where=q > mids)
            idx[1:k] = s.searchsorted(q, side="right")
        else:
            idx[1:k] = s.searchsorted(mids, side="right")
        sv = scum.take(idx)
        sc = sv[1:] - sv[:-1]
        if wcum is None:
            wc = (idx[1:] - idx[:-1]).astype(np.float64)
        else:
            wv = wcum.take(idx)
            wc = wv[1:] - wv[:-1]
        if np.count_nonzero(wc > 0) < k:
            full = wc > 0
            new = c.copy()
            new[full] = sc[full] / wc[full]
            c, means = _relocate(s, w, idx, c, new, wc, sc), False
            continue
        new = sc / wc
        step = new - c
        c, means = new, True
        if max(step.max(), -step.min()) <= tol:
            break
    if means:
        # Prefix-sum rounding can put a mean a hair outside its cluster; clamp it back.
        c = np.clip(c, s[idx[:-1]], s[idx[1:] - 1])
    return c


def _assign(xn: _Float, c: npt.NDArray[np.float32]) -> torch.Tensor:
    """``a_i = #{j : m_j < x_i}`` (nearest centroid, ties low) for every element, int64.

    Exact in ``xn``'s dtype: for float32 ``x``, ``m < x`` iff ``m' < x`` where ``m'``
    is ``m`` rounded down to float32. The bucket ``f(v) = trunc(clip((v - m_0) * scale))``
    is monotone in ``v``, so midpoints in lower buckets are below ``x``, those in higher ones
    above it, and only those sharing ``x``'s bucket need comparing.
    """
    c64 = c.astype(np.float64)
    mids = (c64[:-1] + c64[1:]) / 2  # exact: two float32 summed in float64
    m: _Float = mids
    if xn.dtype == np.float32:
        m = mids.astype(np.float32)
        over = m > mids
        m[over] = np.nextafter(m[over], np.float32(-np.inf))
    if m.size == 0:
        return torch.zeros(xn.size, dtype=torch.int64)
    if m[-1] == m[0]:  # all midpoints equal: nothing to bucket
        return torch.from_numpy((xn > m[0]).astype(np.int64) * m.size)
    buckets = 64 * m.size + 1024
    with np.errstate(over="ignore"):
        scale = xn.dtype.type(buckets / (float(m[-1]) - float(m[0])))
    if np.isfinite(scale):

        def bucket(v: _Float) -> npt.NDArray[np.intp]:
            with np.errstate(over="ignore"):
                t = (v - m[0]) * scale
            np.clip(t, 0, buckets - 1, out=t)
            out: npt.NDArray[np.intp] = t.astype(np.intp)
            return out

        bm = bucket(m)
        per = np.bincount(bm, minlength=buckets)
        if per.max() <= _MAX_PER_BUCKET:
            below = np.concatenate(([0], np.cumsum(per)[:-1]))
            table = np.full((int(per.max()), buckets), np.inf, dtype=m.dtype)
            table[np.arange(m.size) - below[bm], bm] = m
            b = bucket(xn)
            a = below.take(b)
            for row in table:
                a += xn > row.take(b)
            return torch.from_numpy(a)
    return torch.searchsorted(torch.from_numpy(m), torch.from_numpy(xn), side="left")


def kmeans_1d(
    x: torch.Tensor,
    k: int,
    *,
    iters: int = 10_000,
    tol: float = 0.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the elements of ``x`` into ``k`` values: weighted 1-D k-means (Lloyd).

    Minimises ``sum_i w_i * (x_i - c[a_i])**2`` from :func:`linear_init` with the
    sorted prefix-sum Lloyd step and the empty-cluster relocation of the module
    docstring. Arithmetic is float64; the centroids are returned as float32 and
    the assignment is computed exactly against those float32 values, so every
    element is assigned to its nearest returned centroid.

    If the positively weighted elements take ``<= k`` distinct values, those
    values are the centroids (inertia 0 up to float32 rounding), padded to ``k``
    by repeating the largest, which is then never assigned. This covers constant
    input and ``k >= numel``. Elements of weight 0 do not move the centroids but
    are assigned like the others.

    Args:
        x: Any-shape floating tensor (e.g. a weight matrix), all finite.
        k: Number of centroids, ``>= 1``.
        iters: Maximum number of Lloyd steps (assignment + mean update), ``>= 0``;
            ``0`` returns the initialisation (unless there are ``<= k`` values).
        tol: Stop when no cluster was empty and every centroid moved by at most
            ``tol * (max - min)``. ``0`` (default) runs to the exact fixed point,
            where the assignment no longer changes.
        weights: Optional per-element weights, same shape as ``x``, finite,
            ``>= 0`` and not all zero (importance-weighted clustering).

    Returns:
        ``(centroids, assignment)``: float32 ``[k]`` ascending, and int64
        ``[x.numel()]`` indices into it, for the elements of ``x.reshape(-1)``.

    Raises:
        ValueError: NaN/Inf in ``x`` or ``weights``, negative or all-zero weights,
            mismatched shapes, an empty or non-floating ``x``, or a bad ``k``,
            ``iters`` or ``tol``.
    """
    _check_int("k", k, 1)
    _check_int("iters", iters, 0)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < np.inf:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    xn, s, w = _sorted(x, weights)
    lo, hi = float(s[0]), float(s[-1])
    first = np.empty(s.size, dtype=bool)
    first[0] = True
    np.not_equal(s[1:], s[:-1], out=first[1:])
    if np.count_nonzero(first) <= k:
        u = s[first].astype(np.float64)
        c = np.concatenate((u, np.full(k - u.size, hi)))
    else:
        c = _lloyd(s, w, _linspace(lo, hi, k), iters, tol * (hi - lo))
    c32 = c.astype(np.float32)
    return torch.from_numpy(c32), _assign(xn, c32)
