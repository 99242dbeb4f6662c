"""Calibration statistics: ranges, and Hessians checked against the layer's own output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.calibrate import calibrate
from engine.importers._export_to_ir import exported_program_to_ir
from engine.inventory import inventory


@pytest.mark.parametrize(
    ("layer", "shape"),
    [
        (nn.Conv2d(4, 6, 3, stride=2, padding=1), (3, 4, 9, 9)),
        (nn.Conv2d(4, 8, 3, padding="same", groups=2, bias=False), (3, 4, 7, 7)),
        (nn.Conv1d(3, 5, 3, dilation=2), (3, 3, 20)),
        (nn.Linear(6, 4), (3, 5, 6)),
    ],
    ids=["conv_strided", "conv_grouped_same", "conv1d_dilated", "linear_3d"],
)
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
    err = 0.0
    for (x,) in batches:
        x64 = x.double()
        if isinstance(layer, nn.Linear):
            err += float((x64 @ d.T).square().sum())
        else:
            conv = F.conv2d if isinstance(layer, nn.Conv2d) else F.conv1d
            kw = {k: getattr(layer, k) for k in ("stride", "padding", "dilation", "groups")}
            err += float(conv(x64, d, **kw).square().sum())
    rows = d.reshape(d.shape[0], -1).chunk(len(stats.hessians))
    predicted = sum(float((r @ h * r).sum()) for r, h in zip(rows, stats.hessians, strict=True))
    assert predicted * stats.rows / 2 == pytest.approx(err, rel=1e-9)


def test_ranges_cover_every_batch() -> None:
    layer = nn.Linear(3, 2).eval()
    batches = [(torch.full((2, 3), v),) for v in (-4.0, 1.0, 7.5)]
    ir = exported_program_to_ir(torch.export.export(layer, batches[0]))
    info = inventory(ir).layers
    stats = calibrate(ir, info, batches, hessian_layers=set())[info[0].name]
    assert (stats.lo, stats.hi) == (-4.0, 7.5) and stats.hessians is None
    assert set(stats.values().tolist()) == {-4.0, 1.0, 7.5}
