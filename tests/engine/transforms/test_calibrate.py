"""Calibration statistics: ranges, mean inputs and Hessians, checked against the layer's output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.io.importers import exported_program_to_ir
from engine.transforms import _calibrate, calibrate, inventory

LAYERS = pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.Conv2d(4, 6, 3, stride=2, padding=1), (3, 4, 9, 9)),
        (nn.Conv2d(4, 8, 3, padding="same", groups=2, bias=False), (3, 4, 7, 7)),
        (nn.Conv2d(4, 4, 3, padding=1, groups=4), (3, 4, 6, 6)),
        (nn.Conv2d(4, 6, 1), (3, 4, 5, 5)),
        (nn.Conv2d(4, 6, 1, stride=2), (3, 4, 5, 5)),
        (nn.Conv1d(3, 5, 3, dilation=2), (3, 3, 20)),
        (nn.Linear(6, 4), (3, 5, 6)),
    ],
    ids=[
        "conv_strided",
        "conv_grouped_same",
        "conv_depthwise",
        "conv_1x1",
        "conv_1x1_strided",
        "conv1d_dilated",
        "linear_3d",
    ],
)


def _change(layer: nn.Module, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The output change ``y(W + D) - y(W)`` (bias-free, linear in ``D``), channels last."""
    x64 = x.double()
    if isinstance(layer, nn.Linear):
        return x64 @ d.T
    conv = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv1d
    kw = {k: getattr(layer, k) for k in ("stride", "padding", "dilation", "groups")}
    return conv(x64, d, **kw).movedim(1, -1)


@LAYERS
def test_hessian_predicts_the_output_error_of_a_weight_change(layer: nn.Module, shape) -> None:  # type: ignore[no-untyped-def]
    """For output y = layer(x; W): sum ||y(W + D) - y(W)||^2 = m/2 * sum_g D_g H_g D_g^T."""
    g = torch.Generator().manual_seed(0)
    layer = layer.eval()
    batches = [(torch.randn(*shape, generator=g),) for _ in range(2)]
    ir = exported_program_to_ir(torch.export.export(layer, batches[0]))
    info = inventory(ir).layers
    stats = calibrate(ir, info, batches, hessian_layers={info[0].name})[info[0].name]
    assert stats.hessians is not None
    w = ir.tensors[info[0].weight]
    d = torch.randn(w.shape, generator=g, dtype=torch.float64)
    err = sum(float(_change(layer, x, d).square().sum()) for (x,) in batches)
    rows = d.reshape(d.shape[0], -1).chunk(len(stats.hessians))
    predicted = sum(float((r @ h * r).sum()) for r, h in zip(rows, stats.hessians, strict=True))
    assert predicted * stats.rows / 2 == pytest.approx(err, rel=1e-9)


@LAYERS
def test_mean_input_predicts_the_mean_output_change(layer: nn.Module, shape) -> None:  # type: ignore[no-untyped-def]
    """Mean over output positions of y(W + D) - y(W) = D_g E[x]_g for the rows of group g."""
    g = torch.Generator().manual_seed(1)
    layer = layer.eval()
    batches = [(torch.rand(*shape, generator=g) + 0.5,) for _ in range(2)]  # mean far from 0
    ir = exported_program_to_ir(torch.export.export(layer, batches[0]))
    info = inventory(ir).layers
    stats = calibrate(ir, info, batches, hessian_layers=set())[info[0].name]
    assert stats.means is not None and stats.hessians is None
    w = ir.tensors[info[0].weight]
    d = torch.randn(w.shape, generator=g, dtype=torch.float64)
    changes = torch.cat([_change(layer, x, d).reshape(-1, w.shape[0]) for (x,) in batches])
    assert stats.rows == changes.shape[0]
    rows = d.reshape(d.shape[0], -1).chunk(len(stats.means))
    predicted = torch.cat([r @ m for r, m in zip(rows, stats.means, strict=True)])
    torch.testing.assert_close(predicted, changes.mean(0), rtol=1e-12, atol=1e-12)


def test_ranges_cover_every_batch() -> None:
    layer = nn.Linear(3, 2).eval()
    batches = [(torch.full((2, 3), v),) for v in (-4.0, 1.0, 7.5)]
    ir = exported_program_to_ir(torch.export.export(layer, batches[0]))
    info = inventory(ir).layers
    stats = calibrate(ir, info, batches, hessian_layers=set())[info[0].name]
    assert (stats.lo, stats.hi) == (-4.0, 7.5) and stats.hessians is None
    assert set(stats.values().tolist()) == {-4.0, 1.0, 7.5}


def test_conv_hessians_cut_by_images_equal_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(3)
    layer = nn.Conv2d(6, 6, 3, padding=1, groups=3).eval()
    batches = [(torch.randn(5, 6, 12, 12, generator=g),)]
    ir = exported_program_to_ir(torch.export.export(layer, batches[0]))
    info = inventory(ir).layers
    whole = calibrate(ir, info, batches, hessian_layers={info[0].name})[info[0].name]
    monkeypatch.setattr(_calibrate, "PATCH_BYTES", 1)  # one image at a time
    cut = calibrate(ir, info, batches, hessian_layers={info[0].name})[info[0].name]
    assert whole.hessians is not None and cut.hessians is not None and len(cut.hessians) == 3
    for a, b in zip(whole.hessians, cut.hessians, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
