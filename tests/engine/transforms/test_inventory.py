"""Layer inventory: hand-computed figures on the digits CNN and on small synthetic graphs."""

from __future__ import annotations

import torch
from torch import nn

from engine.io.importers import exported_program_to_ir
from engine.ir import generalize_batch
from engine.transforms import inventory


def test_digits_inventory_hand_computed(digits_program) -> None:  # type: ignore[no-untyped-def]
    inv = inventory(exported_program_to_ir(digits_program))
    by_name = {layer.name: layer for layer in inv.layers}
    assert list(by_name) == ["features.0", "features.4", "features.7", "classifier"]
    conv0, conv1, dw, fc = by_name.values()
    # conv: numel(out) * C_in/groups * kh * kw, per example (exported at batch 32)
    assert (conv0.weight_shape, conv0.params, conv0.macs) == ((16, 1, 3, 3), 144, 16 * 8 * 8 * 9)
    assert conv1.macs == 32 * 4 * 4 * 16 * 9
    assert dw.kind == "conv2d depthwise" and dw.macs == 32 * 4 * 4 * 1 * 9
    assert (fc.kind, fc.params, fc.macs) == ("linear", 32 * 10 + 10, 10 * 32)
    assert inv.fixed_batch == 32  # the raw export; import_model generalizes it
    assert [layer.bn_follows for layer in inv.layers] == [True, True, True, False]
    assert inv.other_ops == {
        "adaptive_avg_pool2d": 1,
        "batch_norm": 3,
        "flatten": 1,
        "max_pool2d": 1,
        "relu": 3,
    }
    # 4 layers + 3 BN * (gamma, beta, mean, var) of 16/32/32 channels
    assert inv.total_params == 144 + 4608 + 288 + 330 + 4 * (16 + 32 + 32)
    assert inv.float_bytes == 4 * inv.total_params
    assert inv.layer_params == 144 + 4608 + 288 + 330


def test_macs_are_per_example_at_any_batch(digits_program) -> None:  # type: ignore[no-untyped-def]
    ir = generalize_batch(exported_program_to_ir(digits_program))
    assert ir.batch is not None
    invs = [inventory(ir.at_batch(n)) for n in (1, 7, 32)]
    assert {inv.total_macs for inv in invs} == {
        inventory(exported_program_to_ir(digits_program)).total_macs
    }
    assert {inv.fixed_batch for inv in invs} == {None}


def test_embedding_matmul_and_grouped_conv_are_found() -> None:
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(50, 8)
            self.proj = nn.Parameter(torch.randn(8, 6))
            self.conv = nn.Conv1d(4, 8, 3, groups=2)

        def forward(self, ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            h = torch.matmul(self.emb(ids), self.proj)  # [2, 5, 6]
            return h.sum() + self.conv(x).sum()

    ep = torch.export.export(
        M().eval(), (torch.zeros(2, 5, dtype=torch.long), torch.randn(2, 4, 9))
    )
    layers = {x.name: x for x in inventory(exported_program_to_ir(ep)).layers}
    assert layers["emb"].kind == "embedding" and layers["emb"].macs == 0
    assert layers["emb"].params == 400
    proj = next(x for x in layers.values() if x.weight == "proj")
    assert proj.macs == 5 * 6 * 8  # per example of the batch of 2
    assert layers["conv"].kind == "conv1d grouped(2)" and layers["conv"].macs == 8 * 7 * 2 * 3
