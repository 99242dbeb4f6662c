"""Quantizing one layer's weight: several formats at once equal each on its own."""

from __future__ import annotations

import torch

from engine.quant import LayerFormat, hessian_from_inputs, quantize_weight, quantize_weights

FORMATS = [
    LayerFormat("int3", "float", "nearest", "mse"),
    LayerFormat("int3", "float", "gptq", "mse"),
    LayerFormat("int4g32", "float", "gptq", "mse"),
    LayerFormat("cb16", "float", "gptq"),
    LayerFormat("int4", "float", "gptq", outliers=3),
    LayerFormat("int2", "float", "gptq", outliers=3),
    LayerFormat("fp16", "float"),
]


def _layer(seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 64, generator=g) @ torch.randn(64, 64, generator=g)
    return torch.randn(10, 64, generator=g), [hessian_from_inputs(x)]


def test_many_formats_at_once_equal_each_alone() -> None:
    w, h = _layer()
    together = quantize_weights(w, FORMATS, hessians=h)
    for fmt, q in zip(FORMATS, together, strict=True):
        alone = quantize_weight(w, fmt, hessians=h)
        assert q.fmt == fmt
        torch.testing.assert_close(q.values, alone.values, rtol=0, atol=1e-6)
        if alone.codes is not None:
            assert q.codes is not None
            # equal codes but where float64 block sums put a weight on a rounding tie
            assert (q.codes != alone.codes).float().mean() <= 0.01
        if fmt.outliers:
            assert q.outlier_index is not None and torch.equal(q.outlier_index, alone.outlier_index)


def test_gptq_from_the_nearest_qparams_is_gptq() -> None:
    w, h = _layer(1)
    for weight in ("int3", "cb16"):
        nearest = quantize_weight(w, LayerFormat(weight, "float", "nearest", "mse"))
        fmt = LayerFormat(weight, "float", "gptq", "mse")
        reused = quantize_weight(w, fmt, hessians=h, qparams=nearest.qparams)
        torch.testing.assert_close(reused.values, quantize_weight(w, fmt, hessians=h).values)
