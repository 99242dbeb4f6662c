"""Codebook (k-means, Deep Compression) quantization primitives.

A layer's weights share ``K`` values ``c_0 <= ... <= c_{K-1}`` (the codebook,
stored as float16); each weight stores the index of its value in ``log2(K)``
bits::

    choose_qparams:  c = kmeans_1d(x, K), rounded to float16 and sorted
    quantize:        q = argmin_j |x - c_j|     (ties to the lower index)
    dequantize:      x_hat = c[q]

Nearest-centroid search is a ``searchsorted`` over the midpoints
``(c_j + c_{j+1}) / 2``, valid because the codebook is sorted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.quant._kmeans import kmeans_1d

__all__ = [
    "CodebookQParams",
    "choose_qparams_codebook",
    "dequantize_codebook",
    "fake_quantize_codebook",
    "quantize_codebook",
]


@dataclass(frozen=True, eq=False)
class CodebookQParams:
    """A sorted codebook of ``K`` float32 values (exactly representable in float16)."""

    centroids: torch.Tensor

    def __post_init__(self) -> None:
        c = self.centroids
        if c.dim() != 1 or c.numel() < 1 or c.dtype != torch.float32:
            raise ValueError("centroids must be a non-empty 1-D float32 tensor")
        if not bool((c[1:] >= c[:-1]).all()):
            raise ValueError("centroids must be sorted ascending")


def choose_qparams_codebook(
    x: torch.Tensor, k: int, *, weights: torch.Tensor | None = None
) -> CodebookQParams:
    """K-means codebook of ``x`` (linear init), rounded to float16 precision."""
    centroids, _ = kmeans_1d(x.detach().float(), k, weights=weights)
    c16 = centroids.half().float()
    return CodebookQParams(torch.sort(c16).values)


def quantize_codebook(x: torch.Tensor, qp: CodebookQParams) -> torch.Tensor:
    """Index of the nearest centroid for every element (int64, shape of ``x``)."""
    c = qp.centroids.double()
    mids = (c[:-1] + c[1:]) / 2
    flat = torch.searchsorted(mids, x.detach().double().reshape(-1), side="left")
    return flat.reshape(x.shape)


def dequantize_codebook(q: torch.Tensor, qp: CodebookQParams) -> torch.Tensor:
    """``centroids[q]`` as float32, shape of ``q``."""
    return qp.centroids[q.long()]


def fake_quantize_codebook(x: torch.Tensor, qp: CodebookQParams) -> torch.Tensor:
    """``dequantize_codebook(quantize_codebook(x))``."""
    return dequantize_codebook(quantize_codebook(x, qp), qp)
