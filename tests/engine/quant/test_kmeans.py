"""1-D k-means: by hand, against a brute-force Lloyd and scikit-learn, properties, edges."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from engine.quant import kmeans_1d, linear_init


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _inertia(
    x: torch.Tensor, c: torch.Tensor, a: torch.Tensor, w: torch.Tensor | None = None
) -> float:
    d2 = (x.double().reshape(-1) - c.double()[a]) ** 2
    return float(d2.sum() if w is None else (w.double().reshape(-1) * d2).sum())


def _data(kind: str, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "gauss":
        return torch.randn(n, generator=g)
    if kind == "laplace":
        u = torch.rand(n, generator=g, dtype=torch.float64) - 0.5
        return (-torch.sign(u) * torch.log1p(-2 * u.abs())).float()
    if kind == "ints":  # heavy duplication
        return torch.randint(-20, 21, (n,), generator=g).float()
    return torch.rand(n, generator=g)


def _brute_lloyd(x: np.ndarray, c: np.ndarray, iters: int) -> tuple[np.ndarray, np.ndarray]:
    """Textbook Lloyd with an n x k distance matrix, sklearn's empty-cluster rule."""
    for _ in range(iters):
        labels = np.abs(x[:, None] - c[None, :]).argmin(1)
        new = c.copy()
        for j in range(c.size):
            if (labels == j).any():
                new[j] = x[labels == j].mean()
        empty = [j for j in range(c.size) if not (labels == j).any()]
        far = np.argsort(-((x - c[labels]) ** 2), kind="stable")[: len(empty)]
        for j, i in zip(empty, far, strict=True):
            donor = labels == labels[i]
            donor[i] = False
            new[labels[i]] = x[donor].mean()
            labels[i] = j
            new[j] = x[i]
        if not empty and np.array_equal(new, c):
            break
        c = np.sort(new)
    return c, np.abs(x[:, None] - c[None, :]).argmin(1)


# --- by hand -----------------------------------------------------------------------------


def test_distinct_values_become_the_centroids() -> None:
    c, a = kmeans_1d(_t([0, 0, 1, 1, 10, 10]), 3)
    assert c.tolist() == [0.0, 1.0, 10.0]
    assert a.tolist() == [0, 0, 1, 1, 2, 2]


def test_two_clusters_by_hand() -> None:
    # init [0, 12], midpoint 6: {0, 1, 2} -> 1, {10, 11, 12} -> 11, then stable
    c, a = kmeans_1d(_t([12, 0, 11, 1, 10, 2]), 2)
    assert c.tolist() == [1.0, 11.0]
    assert a.tolist() == [1, 0, 1, 0, 1, 0]


def test_empty_cluster_relocation_and_tie_by_hand() -> None:
    # init [0, 50, 100], midpoints 25, 75: {0,1,2,3} | {} | {100}. The empty centroid
    # moves onto 3, the value farthest from its centroid 0; its donor becomes {0,1,2}.
    # Next midpoints 2 and 51.5: 2 ties between 1 and 3 and goes low, so this is the
    # fixed point (inertia 2). {0,1},{2,3},{100} would score 1: Lloyd finds local optima,
    # and which one can hinge on how exact ties are broken.
    c, a = kmeans_1d(_t([0, 1, 2, 3, 100]), 3)
    assert c.tolist() == [1.0, 3.0, 100.0]
    assert a.tolist() == [0, 0, 0, 1, 2]


def test_weighted_by_hand() -> None:
    # init [0, 10]: {0, 1} -> (0*1 + 1*3) / 4 = 0.75, {10} -> 10; midpoint 5.375, stable
    c, a = kmeans_1d(_t([0, 1, 10]), 2, weights=_t([1, 3, 1]))
    assert c.tolist() == [0.75, 10.0]
    assert a.tolist() == [0, 0, 1]


def test_k1_is_the_weighted_mean() -> None:
    c, a = kmeans_1d(_t([1, 2, 3, 10]), 1)
    assert c.tolist() == [4.0] and a.tolist() == [0, 0, 0, 0]
    c, _ = kmeans_1d(_t([1, 2, 3, 10]), 1, weights=_t([0, 0, 1, 1]))
    assert c.tolist() == [6.5]


# --- independent references ----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "k"), [("uniform", 5), ("gauss", 12), ("laplace", 9)])
def test_matches_brute_force_lloyd(kind: str, k: int) -> None:
    x = _data(kind, 1500, seed=k)
    init = linear_init(x, k).numpy()
    for iters in (1, 3, 500):
        ref_c, ref_a = _brute_lloyd(x.double().numpy(), init, iters)
        c, a = kmeans_1d(x, k, iters=iters)
        np.testing.assert_allclose(c.numpy(), ref_c, rtol=1e-6, atol=1e-7)
        assert np.array_equal(a.numpy(), ref_a)


@pytest.mark.parametrize(
    ("kind", "k", "seed"),
    [("gauss", 8, 0), ("laplace", 16, 1), ("uniform", 32, 2), ("ints", 10, 3), ("laplace", 3, 4)],
)
def test_not_worse_than_sklearn(kind: str, k: int, seed: int) -> None:
    x = _data(kind, 3000, seed)
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) + 0.1
    for weights in (None, w):
        init = linear_init(x, k, weights=weights).numpy()[:, None]
        sw = None if weights is None else weights.double().numpy()
        for tol in (1e-4, 0.0):  # sklearn's default stop, and run to its own convergence
            km = KMeans(k, init=init, n_init=1, algorithm="lloyd", tol=tol, max_iter=300)
            with threadpool_limits(1):  # OpenMP spin-waits crawl on a busy machine
                km.fit(x.double().numpy()[:, None], sample_weight=sw)
            ours = _inertia(x, *kmeans_1d(x, k, weights=weights), weights)
            theirs = _inertia(
                x,
                torch.from_numpy(km.cluster_centers_[:, 0]),
                torch.from_numpy(km.labels_),
                weights,
            )
            assert ours <= theirs * (1 + 1e-6), (weights is None, tol, ours, theirs)


def test_gaussian_quality_matches_lloyd_max() -> None:
    # Max (1960): the optimal 4- and 16-level quantizers of N(0, 1) have MSE 0.1175, 0.009497.
    x = _data("gauss", 200_000, seed=5)
    for k, mse in ((4, 0.1175), (16, 0.009497)):
        c, a = kmeans_1d(x, k)
        assert _inertia(x, c, a) / x.numel() < 1.02 * mse


# --- properties ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "k"), [("gauss", 7), ("laplace", 64), ("ints", 16), ("uniform", 2)]
)
def test_sorted_nearest_and_shapes(kind: str, k: int) -> None:
    x = _data(kind, 4000, seed=k).reshape(40, 100)
    c, a = kmeans_1d(x, k)
    assert c.dtype == torch.float32 and c.shape == (k,)
    assert a.dtype == torch.int64 and a.shape == (x.numel(),)
    assert bool((c[1:] >= c[:-1]).all()) and int(a.min()) >= 0 and int(a.max()) < k
    d = (x.reshape(-1, 1).double() - c.double()).abs()
    assert bool((d.gather(1, a[:, None])[:, 0] <= d.min(1).values).all())
    c2, a2 = kmeans_1d(x.reshape(-1), k)  # shape does not matter
    assert torch.equal(c, c2) and torch.equal(a, a2)


@pytest.mark.parametrize("weighted", [False, True])
def test_inertia_non_increasing_over_iterations(weighted: bool) -> None:
    x = _data("laplace", 5000, seed=6)
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(6)) if weighted else None
    values = [_inertia(x, *kmeans_1d(x, 32, iters=it, weights=w), w) for it in range(0, 40)]
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(values))
    assert values[-1] < 0.9 * values[0]


def test_iters_zero_is_the_linear_init() -> None:
    x = _data("gauss", 1000, seed=7)
    c, _ = kmeans_1d(x, 9, iters=0)
    assert torch.equal(c, linear_init(x, 9).float())
    assert torch.equal(
        linear_init(x, 9), torch.linspace(float(x.min()), float(x.max()), 9, dtype=torch.float64)
    )


def test_idempotent_on_its_reconstruction() -> None:
    x = _data("laplace", 3000, seed=8)
    c, a = kmeans_1d(x, 16)
    rec = c[a]
    c2, a2 = kmeans_1d(rec, 16)
    assert torch.equal(c2[a2], rec)


def test_integer_weights_equal_repetition_and_zero_weights_do_not_pull() -> None:
    x = _data("gauss", 500, seed=9)
    reps = torch.randint(1, 4, x.shape, generator=torch.Generator().manual_seed(9))
    c_w, _ = kmeans_1d(x, 6, weights=reps.float())
    c_r, _ = kmeans_1d(x.repeat_interleave(reps), 6)
    assert torch.equal(c_w, c_r)
    outliers = torch.cat([x, _t([50.0, -50.0])])
    c_z, a_z = kmeans_1d(outliers, 6, weights=torch.cat([torch.ones(500), torch.zeros(2)]))
    assert torch.equal(c_z, kmeans_1d(x, 6)[0])
    assert a_z[-2:].tolist() == [5, 0]  # still assigned, to the nearest centroid


def test_pure_and_dtype_agnostic() -> None:
    x = _data("gauss", 1000, seed=10)
    w = torch.rand(x.shape, generator=torch.Generator().manual_seed(10))
    x0, w0 = x.clone(), w.clone()
    kmeans_1d(x, 8, weights=w)
    assert torch.equal(x, x0) and torch.equal(w, w0)
    c, a = kmeans_1d(x, 8)
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        xd = x.to(dtype)
        cd, ad = kmeans_1d(xd, 8)
        if dtype == torch.float64:
            assert torch.equal(cd, c) and torch.equal(ad, a)
        d = (xd.double()[:, None] - cd.double()).abs()
        assert bool((d.gather(1, ad[:, None])[:, 0] <= d.min(1).values).all())


def test_bucketed_assignment_matches_searchsorted_with_ties() -> None:
    # Elements exactly on midpoints (ties) and between, for float32 and float64 inputs.
    x = torch.cat([torch.arange(-20, 21, dtype=torch.float32) / 4, _data("gauss", 2000, 11)])
    for dtype in (torch.float32, torch.float64):
        xd = x.to(dtype)
        c, a = kmeans_1d(xd, 24)
        mids = (c[:-1].double() + c[1:].double()) / 2
        assert torch.equal(a, torch.searchsorted(mids, xd.double(), side="left"))


# --- edge cases ----------------------------------------------------------------------------


def test_constant_input() -> None:
    c, a = kmeans_1d(torch.full((3, 5), 3.5), 4)
    assert c.tolist() == [3.5] * 4 and a.tolist() == [0] * 15


def test_k_at_least_distinct_pads_with_the_largest() -> None:
    c, a = kmeans_1d(_t([2, -1, 2, 7]), 5)
    assert c.tolist() == [-1.0, 2.0, 7.0, 7.0, 7.0]
    assert a.tolist() == [1, 0, 1, 2]
    c, a = kmeans_1d(_t([4.0]), 1)
    assert c.tolist() == [4.0] and a.tolist() == [0]


def test_tol_stops_earlier_but_close() -> None:
    x = _data("laplace", 5000, seed=12)
    exact = _inertia(x, *kmeans_1d(x, 32))
    looser = [_inertia(x, *kmeans_1d(x, 32, tol=tol)) for tol in (1e-4, 1e-3, 1e-2)]
    assert exact <= looser[0] <= looser[1] <= looser[2] < 1.5 * exact


@pytest.mark.parametrize(
    ("x", "k", "kwargs", "match"),
    [
        (_t([1, float("nan")]), 2, {}, "NaN/Inf"),
        (_t([1, float("inf")]), 2, {}, "NaN/Inf"),
        (torch.tensor([1e300, 0.0], dtype=torch.float64), 2, {}, "float32 range"),
        (torch.empty(0), 2, {}, "empty"),
        (torch.arange(4), 2, {}, "floating-point"),
        (_t([1, 2]), 0, {}, "k must be"),
        (_t([1, 2]), True, {}, "k must be"),
        (_t([1, 2]), 2, {"iters": -1}, "iters must be"),
        (_t([1, 2]), 2, {"tol": -1.0}, "tol must be"),
        (_t([1, 2]), 2, {"tol": float("nan")}, "tol must be"),
        (_t([1, 2]), 2, {"weights": _t([1, -1])}, ">= 0"),
        (_t([1, 2]), 2, {"weights": _t([0, 0])}, "all zero"),
        (_t([1, 2]), 2, {"weights": _t([1, float("nan")])}, "NaN/Inf"),
        (_t([1, 2]), 2, {"weights": _t([1, 1, 1])}, "shape"),
    ],
)
def test_rejects_bad_input(x: torch.Tensor, k: int, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        kmeans_1d(x, k, **kwargs)  # type: ignore[arg-type]
