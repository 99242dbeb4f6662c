"""Codebook quantization primitives, tested the five ways of STYLE.md."""

from __future__ import annotations

import pytest
import torch

from engine.quant import (
    CodebookQParams,
    choose_qparams_codebook,
    dequantize_codebook,
    fake_quantize_codebook,
    quantize_codebook,
)


def _w(seed: int, shape: tuple[int, ...] = (64, 128)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _sqnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(10 * torch.log10(x.square().sum() / (x - y).square().sum()))


def test_by_hand() -> None:
    x = torch.tensor([0.0, 0.0, 1.0, 1.0, 10.0, 10.0, 0.4, 0.5])
    qp = choose_qparams_codebook(x, 3)
    # linear init [0, 5, 10]; the middle cluster starts empty and moves onto 1.0 (largest
    # error contribution); then {0, 0, 0.4, 0.5} -> 0.225, {1, 1} -> 1, {10, 10} -> 10
    assert qp.centroids.tolist() == [torch.tensor(0.225).half().item(), 1.0, 10.0]
    # midpoints 0.6125 and 5.5: 0.5 -> 0; an exact tie at a midpoint goes to the lower index
    assert quantize_codebook(x, qp).tolist() == [0, 0, 1, 1, 2, 2, 0, 0]
    tie = CodebookQParams(torch.tensor([0.0, 1.0]))
    assert quantize_codebook(torch.tensor([0.5]), tie).tolist() == [0]


def test_matches_brute_force_nearest_centroid() -> None:
    x = _w(1)
    qp = choose_qparams_codebook(x, 16)
    brute = (x.reshape(-1, 1) - qp.centroids.reshape(1, -1)).abs().argmin(1).reshape(x.shape)
    assert torch.equal(quantize_codebook(x, qp), brute)


@pytest.mark.parametrize("k", [2, 4, 16, 256])
def test_properties(k: int) -> None:
    x = _w(k)
    qp = choose_qparams_codebook(x, k)
    c = qp.centroids
    assert c.numel() == k and bool((c[1:] >= c[:-1]).all())
    assert torch.equal(c, c.half().float())  # exactly representable in float16
    q = quantize_codebook(x, qp)
    assert q.shape == x.shape and int(q.min()) >= 0 and int(q.max()) < k
    assert torch.unique(fake_quantize_codebook(x, qp)).numel() <= k


@pytest.mark.parametrize("k", [4, 256])
def test_round_trip_and_idempotence(k: int) -> None:
    x = _w(3)
    qp = choose_qparams_codebook(x, k)
    q = quantize_codebook(x, qp)
    fq = dequantize_codebook(q, qp)
    assert torch.equal(fake_quantize_codebook(fq, qp), fq)
    assert torch.equal(x, _w(3))  # input untouched


@pytest.mark.parametrize(("k", "floor_db"), [(4, 8.0), (16, 19.0), (256, 40.0)])
def test_sqnr_floor_beats_uniform_of_same_bits(k: int, floor_db: float) -> None:
    from engine.quant import choose_qparams_affine, fake_quantize_affine

    x = _w(4)
    cb = _sqnr(x, fake_quantize_codebook(x, choose_qparams_codebook(x, k)))
    bits = k.bit_length() - 1
    uniform = _sqnr(x, fake_quantize_affine(x, choose_qparams_affine(x, bits=bits)))
    assert cb >= floor_db and cb > uniform


def test_invalid_codebooks() -> None:
    with pytest.raises(ValueError, match="sorted"):
        CodebookQParams(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="float32"):
        CodebookQParams(torch.tensor([1, 2]))
