"""1-D k-means (Lloyd) for codebook quantization, exploiting that the data is a line.

Objective, for elements ``x_i`` with weights ``w_i >= 0`` (all 1 by default) and
``k`` centroids ``c_0 <= ... <= c_{k-1}``::

    inertia = sum_i w_i * (x_i - c[a_i])**2,    a_i = argmin_j |x_i - c_j|

In one dimension the nearest-centroid cells are intervals cut at the midpoints
``m_j = (c_j + c_{j+1}) / 2``: element ``x`` goes to cluster ``j`` iff
``m_{j-1} < x <= m_j`` (an exact tie goes to the lower index, as ``argmin`` does).
So, once the distinct values ``u`` (weights ``v``) are sorted, a Lloyd step is

    b_j = #{u <= m_j}                          (searchsorted, O(k log n))
    c_j = (S[b_j] - S[b_{j-1}]) / (V[b_j] - V[b_{j-1}])

with prefix sums ``V = cumsum(v)``, ``S = cumsum(v * u)``: O(k log n) per iteration
after one O(n log n) sort, and never an ``n x k`` distance matrix.

Initialisation is linear, as in Deep Compression (Han et al., 2016): ``k`` centroids
evenly spaced over ``[min, max]`` of the positively weighted elements
(:func:`linear_init`). Empty clusters are relocated as in scikit-learn's Lloyd:
each empty centroid moves onto a distinct value with the largest contribution
``v * (u - c[a])**2`` to the objective (ties: the smaller value), which leaves its
old cluster. Every step (assignment, mean update, relocation) cannot increase the
inertia, so it is non-increasing over iterations.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["kmeans_1d", "linear_init"]

_F64 = npt.NDArray[np.float64]
_I64 = npt.NDArray[np.int64]


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _flat_f64(name: str, t: torch.Tensor) -> _F64:
    """``t`` flattened to a float64 numpy array (a copy unless already float64 on CPU)."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {type(t).__name__}")
    arr: _F64 = t.detach().to("cpu", torch.float64).reshape(-1).numpy()
    if arr.size == 0:
        raise ValueError(f"{name} is empty; k-means needs at least one element")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} has {bad} NaN/Inf element(s); clean or clamp it first")
    return arr


def _atoms(x: torch.Tensor, weights: torch.Tensor | None) -> tuple[_F64, _F64, _F64, _F64]:
    """Validate; return ``(flat x, distinct values u, their weights v, [min, max] of u)``.

    Only elements with positive weight make atoms; ``u`` is strictly increasing.
    """
    xf = _flat_f64("x", x)
    if weights is None:
        xs = np.sort(xf)
        vs = None
    else:
        if tuple(weights.shape) != tuple(x.shape):
            raise ValueError(
                f"weights shape {tuple(weights.shape)} must equal x shape {tuple(x.shape)}"
            )
        wf = _flat_f64("weights", weights)
        if (wf < 0).any():
            raise ValueError(f"weights must be >= 0, min is {wf.min()!r}")
        keep = wf > 0
        if not keep.any():
            raise ValueError("weights are all zero; at least one element needs weight > 0")
        order = np.argsort(xf[keep], kind="stable")
        xs, vs = xf[keep][order], wf[keep][order]
    starts = np.flatnonzero(np.concatenate(([True], xs[1:] != xs[:-1])))
    u = xs[starts]
    if vs is None:
        v = np.diff(np.append(starts, xs.size)).astype(np.float64)
    else:
        v = np.add.reduceat(vs, starts)
    return xf, u, v, np.array([u[0], u[-1]])


def linear_init(x: torch.Tensor, k: int, *, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Deep Compression's linear initialisation: ``c_j = lo + (hi - lo) * j / (k - 1)``.

    Args:
        x: Any-shape floating tensor, finite.
        k: Number of centroids, ``>= 1``.
        weights: Optional nonnegative per-element weights, same shape as ``x``;
            ``lo, hi`` are the min and max over elements with positive weight.

    Returns:
        float64 ``[k]``, ascending; for ``k == 1`` the midpoint ``(lo + hi) / 2``.
    """
    _check_int("k", k, 1)
    _, _, _, (lo, hi) = _atoms(x, weights)
    return torch.from_numpy(_linspace(float(lo), float(hi), k))


def _linspace(lo: float, hi: float, k: int) -> _F64:
    if k == 1:
        return np.array([(lo + hi) / 2])
    return np.linspace(lo, hi, k)


def _relocate(u: _F64, v: _F64, lo: _I64, hi: _I64, wc: _F64, sc: _F64, c: _F64) -> _F64:
    """Move each empty centroid onto a far value; return the new (sorted) centroids.

    ``c`` holds the new means of non-empty clusters; ``wc, sc`` their weight and sum.
    """
    empty = np.flatnonzero(hi == lo)
    labels = np.repeat(np.arange(c.size), hi - lo)
    cost = v * (u - c[labels]) ** 2
    # The n_empty largest costs; ties broken by index (= smaller value), deterministically.
    n = empty.size
    thresh = np.partition(cost, cost.size - n)[cost.size - n]
    picked = np.concatenate((np.flatnonzero(cost > thresh), np.flatnonzero(cost == thresh)))[:n]
    # There are always > n_empty atoms off their centroid when #atoms > k.
    assert thresh > 0, "relocation needs atoms away from their centroid"
    donors = labels[picked]
    taken_w = np.bincount(donors, weights=v[picked], minlength=c.size)
    taken_s = np.bincount(donors, weights=v[picked] * u[picked], minlength=c.size)
    taken_n = np.bincount(donors, minlength=c.size)
    out = c.copy()
    left = (hi - lo) - taken_n
    changed = (taken_n > 0) & (left > 0)
    out[changed] = (sc[changed] - taken_s[changed]) / (wc[changed] - taken_w[changed])
    out[empty] = u[picked]
    return np.sort(out)


def _lloyd(u: _F64, v: _F64, c: _F64, iters: int, tol: float) -> _F64:
    """Run up to ``iters`` Lloyd steps on atoms ``(u, v)`` from centroids ``c``."""
    k, m = c.size, u.size
    # Row i: (V[i], S[i]); one gather per step fetches both prefix sums of a boundary.
    table = np.zeros((m + 1, 2))
    np.cumsum(v, out=table[1:, 0])
    np.cumsum(v * u, out=table[1:, 1])
    idx = np.zeros(k + 1, dtype=np.int64)
    idx[k] = m
    for _ in range(iters):
        mids = c[:-1] + c[1:]
        mids *= 0.5
        idx[1:k] = np.searchsorted(u, mids, side="right")
        rows = table[idx]
        sums = rows[1:] - rows[:-1]
        wc, sc = sums[:, 0], sums[:, 1]
        if not wc.all():
            new = c.copy()
            full = wc > 0
            new[full] = sc[full] / wc[full]
            c = _relocate(u, v, idx[:-1], idx[1:], wc, sc, new)
            continue
        new = sc / wc
        shift = float(np.abs(new - c).max())
        c = new
        if shift <= tol:
            break
    # Prefix-sum rounding can put a mean a hair outside its cluster; clamp it back in.
    b = np.searchsorted(u, (c[:-1] + c[1:]) / 2, side="right")
    lo, hi = np.concatenate(([0], b)), np.concatenate((b, [m]))
    full = hi > lo
    c[full] = np.clip(c[full], u[lo[full]], u[hi[full] - 1])
    return c


def kmeans_1d(
    x: torch.Tensor,
    k: int,
    *,
    iters: int = 300,
    tol: float = 0.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the elements of ``x`` into ``k`` values (weighted 1-D k-means, Lloyd).

    Minimises ``sum_i w_i * (x_i - c[a_i])**2`` from the linear initialisation
    (:func:`linear_init`), with the sorted-prefix-sum Lloyd step and empty-cluster
    relocation described in the module docstring. Arithmetic is float64; the
    returned centroids are rounded to float32 and the assignment is recomputed
    against those rounded values, so it is exactly nearest-centroid for the output.

    Special cases: if the positively weighted elements take ``<= k`` distinct
    values, those values are the centroids (inertia 0), padded to ``k`` by
    repeating the largest (the repeats are never assigned); this covers constant
    input and ``k >= numel``. Elements with weight 0 do not move centroids but are
    assigned like the others.

    Args:
        x: Any-shape floating tensor (e.g. a weight matrix), all finite.
        k: Number of centroids, ``>= 1``.
        iters: Maximum number of Lloyd steps (assignment + mean update), ``>= 0``;
            ``0`` returns the initialisation.
        tol: Stop when no cluster was empty and every centroid moved by at most
            ``tol * (max - min)``. ``0`` (default) stops at the exact fixed point
            (the assignment no longer changes).
        weights: Optional nonnegative per-element weights, same shape as ``x``,
            not all zero (importance-weighted clustering).

    Returns:
        ``(centroids, assignment)``: float32 ``[k]`` ascending, and int64
        ``[x.numel()]`` indices into it for ``x.reshape(-1)``.

    Raises:
        ValueError: On NaN/Inf in ``x`` or ``weights``, negative or all-zero
            weights, a shape mismatch, an empty ``x``, or a bad ``k``/``iters``/``tol``.
    """
    _check_int("k", k, 1)
    _check_int("iters", iters, 0)
    if not (isinstance(tol, (int, float)) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite float >= 0, got {tol!r}")
    xf, u, v, (lo, hi) = _atoms(x, weights)
    if u.size <= k:
        c = np.concatenate((u, np.full(k - u.size, u[-1])))
    else:
        c = _lloyd(u, v, _linspace(float(lo), float(hi), k), iters, tol * float(hi - lo))
    c32 = torch.from_numpy(c.astype(np.float32))
    c64 = c32.to(torch.float64)
    # x <= m_j goes to j: the count of midpoints strictly below x.
    assign = torch.searchsorted((c64[:-1] + c64[1:]) / 2, torch.from_numpy(xf), side="left")
    return c32, assign
