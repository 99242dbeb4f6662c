"""1-D k-means: MPQ's ``kmeans_1d`` against scikit-learn's Lloyd, same data, same init.

Run: ``.venv/bin/python bench/kmeans.py``

Both start from the same linear initialisation (``linear_init``, passed to
scikit-learn as the ``init`` array, ``n_init=1``, ``algorithm="lloyd"``) on the same
float64 data, with 2 threads each (``torch.set_num_threads(2)``; scikit-learn's
OpenMP/BLAS pools capped at 2 by threadpoolctl). Inertia is recomputed for both
in float64 on the same objective, ``sum_i (x_i - c[a_i])**2`` from each method's
own centroids and labels.

Two MPQ rows per case:

* ``fixpoint``: the defaults (``tol=0``): Lloyd runs until the assignment stops
  changing. scikit-learn instead stops at its default ``tol=1e-4`` (squared
  centre shift relative to the data variance), usually far earlier.
* ``same-it``: ``iters`` = scikit-learn's ``n_iter_``: the same Lloyd trajectory
  (same init, same empty-cluster relocation rule), so equal work and equal inertia
  up to exact ties and duplicated values, which the two may treat differently.

MPQ times are the best of 3 runs; scikit-learn's is one run (it is slow).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.quant import kmeans_1d, linear_init

THREADS = 2
N = 1_000_000
KS = (4, 16, 256)
MINILM_KEY = "encoder.layer.0.intermediate.dense.weight"


def datasets() -> Iterator[tuple[str, torch.Tensor]]:
    """Gaussian and Laplacian 1M samples (float32, seeded), then a real MiniLM weight."""
    g = torch.Generator().manual_seed(0)
    yield "gauss-1M", torch.randn(N, generator=g)
    u = torch.rand(N, generator=g, dtype=torch.float64) - 0.5
    yield "laplace-1M", (-torch.sign(u) * torch.log1p(-2 * u.abs())).float()
    try:
        from safetensors import safe_open

        from examples.minilm import model_dir

        with safe_open(str(model_dir() / "model.safetensors"), framework="pt") as f:
            w = f.get_tensor(MINILM_KEY).float()
        yield f"minilm-{w.shape[0]}x{w.shape[1]}", w
    except (ImportError, SystemExit) as exc:
        print(f"(MiniLM weight unavailable, skipped: {exc})")


Result = tuple[torch.Tensor, torch.Tensor]


def best_of(n: int, fn: Callable[[], Result]) -> tuple[float, Result]:
    """Best wall time of ``n`` calls of ``fn``, and its (last) result."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def inertia(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    """``sum_i (x_i - c[a_i])**2`` in float64."""
    return float(((x - centroids[labels]) ** 2).sum())


def main() -> None:
    torch.set_num_threads(THREADS)
    print(
        f"torch threads {torch.get_num_threads()}, sklearn threads capped at {THREADS}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    head = (
        f"{'data':<18}{'K':>4}  {'MPQ mode':<9}{'MPQ s':>8}{'sk s':>8}{'sk it':>6}"
        f"{'speedup':>9}{'MPQ inertia':>14}{'sk inertia':>14}{'MPQ/sk':>10}"
    )
    print(head)
    print("-" * len(head))
    for name, x in datasets():
        xd = x.double().reshape(-1).numpy()
        for k in KS:
            init = linear_init(x, k).numpy()
            with threadpool_limits(THREADS), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t = time.perf_counter()
                km = KMeans(k, init=init[:, None], n_init=1, algorithm="lloyd").fit(xd[:, None])
                sk_s = time.perf_counter() - t
            sk_in = inertia(xd, km.cluster_centers_[:, 0], km.labels_)
            sk_it = int(km.n_iter_)
            runs = (
                ("fixpoint", partial(kmeans_1d, x, k)),
                ("same-it", partial(kmeans_1d, x, k, iters=sk_it)),
            )
            for mode, run in runs:
                s, (c, a) = best_of(3, run)
                mpq_in = inertia(xd, c.double().numpy(), a.numpy())
                print(
                    f"{name:<18}{k:>4}  {mode:<9}{s:>8.3f}{sk_s:>8.2f}{sk_it:>6}"
                    f"{sk_s / s:>8.1f}x{mpq_in:>14.6g}{sk_in:>14.6g}{mpq_in / sk_in:>10.6f}"
                )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
