"""ExportedProgram -> IR for the programs people export: in-place ops and dynamic batches.

The conversion runs in the sandboxed child in production; here it runs on programs the
tests export themselves, against eager torch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.export import Dim

from engine.errors import UnsupportedOpsError
from engine.io.importers import exported_program_to_ir
from engine.ir import DYNAMIC_BATCH, generalize_batch, to_graph_module
from engine.transforms import inventory


class InPlace(nn.Module):
    """What torchvision-style blocks do: in-place activations, residual ``+=``, dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.relu6 = nn.ReLU6(inplace=True)
        self.drop = nn.Dropout(0.2, inplace=True)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn(self.conv(x)))
        y += self.conv(x)  # aten.add_
        y = self.relu6(y)  # aten.hardtanh_
        y.mul_(0.5)
        y[:, :2].add_(1.0)  # a write through a view: must reach y
        y = self.drop(y).mean((2, 3))  # aten.dropout_ (eval: identity)
        z = torch.zeros_like(y)
        z.copy_(y)  # aten.copy_
        return self.fc(z.sigmoid_())


def _bn_stats(model: InPlace) -> InPlace:
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    return model.eval()


def test_in_place_ops_become_pure_and_compute_the_same() -> None:
    torch.manual_seed(0)
    model = _bn_stats(InPlace())
    x = torch.randn(2, 3, 6, 6)
    ep = torch.export.export(model, (x,))
    ops = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"aten.add_.Tensor", "aten.hardtanh_.default", "aten.dropout_.default"} <= ops
    ir = exported_program_to_ir(ep)
    assert not [n.op for n in ir.nodes if n.op.split(".")[1].endswith("_")]
    assert "aten.batch_norm.default" in {n.op for n in ir.nodes}  # still foldable
    with torch.no_grad():
        torch.testing.assert_close(to_graph_module(ir)(x), model(x.clone()))


def test_dynamic_batch_program_is_specialised_then_runs_at_any_batch() -> None:
    torch.manual_seed(0)
    model = _bn_stats(InPlace())
    ep = torch.export.export(model, (torch.randn(4, 3, 6, 6),), dynamic_shapes=({0: Dim("batch")},))
    ir = exported_program_to_ir(ep)
    assert ir.inputs[0].shape == (DYNAMIC_BATCH, 3, 6, 6)
    ir = generalize_batch(ir)
    assert ir.batch is not None
    for n in (1, 9):
        x = torch.randn(n, 3, 6, 6)
        with torch.no_grad():
            torch.testing.assert_close(to_graph_module(ir.at_batch(n))(x), model(x.clone()))


def test_a_batch_range_narrower_than_the_default_is_respected() -> None:
    ep = torch.export.export(
        nn.Linear(4, 2).eval(),
        (torch.randn(3, 4),),
        dynamic_shapes=({0: Dim("batch", min=2, max=8)},),
    )
    assert exported_program_to_ir(ep).inputs[0].shape == (8, 4)


def test_a_dynamic_dimension_other_than_the_batch_is_refused_clearly() -> None:
    class Pool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(1)

    ep = torch.export.export(
        Pool(), (torch.randn(2, 5, 3),), dynamic_shapes=({0: Dim("b"), 1: Dim("seq")},)
    )
    with pytest.raises(UnsupportedOpsError, match=r"dynamic dimension 1.*dimension 0"):
        exported_program_to_ir(ep)


def test_diff_and_views_of_transposed_attention_outputs_import() -> None:
    class Decoderish(nn.Module):
        def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
            packed = torch.diff(ids, prepend=ids[:, :1], dim=-1)  # transformers' mask code
            q = x.view(2, 5, 2, 4).transpose(1, 2)
            a = torch.nn.functional.scaled_dot_product_attention(q, q, q)
            return a.transpose(1, 2).contiguous().view(2, 5, 8) + packed[..., None]

    x, ids = torch.randn(2, 5, 8), torch.randint(0, 9, (2, 5))
    ir = exported_program_to_ir(torch.export.export(Decoderish(), (x, ids)))
    ops = {n.op for n in ir.nodes}
    assert "aten.diff.default" not in ops and "aten.view.default" not in ops
    torch.testing.assert_close(to_graph_module(ir)(x, ids), Decoderish()(x, ids))


def test_weight_norm_of_stored_tensors_becomes_a_quantizable_weight() -> None:
    torch.manual_seed(0)
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 3, padding=1), dim=2)
    model = nn.Sequential(conv).eval()  # Wav2Vec2's positional conv is built like this
    x = torch.randn(2, 4, 9)
    ir = exported_program_to_ir(torch.export.export(model, (x,)))
    assert "aten._weight_norm.default" not in {n.op for n in ir.nodes}
    assert [(x.name, x.weight_shape) for x in inventory(ir).layers] == [("0", (6, 4, 3))]
    with torch.no_grad():
        torch.testing.assert_close(to_graph_module(ir)(x), model(x))
