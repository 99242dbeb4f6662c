"""Batch-norm folding: hand-computed, against PyTorch's own fusion, and on real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

from engine.errors import TrainingModeError
from engine.io.importers import exported_program_to_ir
from engine.ir import IRModel, Node, Ref, TensorSpec, to_graph_module
from engine.transforms import BN_OP, fold_batch_norm, fold_bn_weights


def test_fold_bn_weights_hand_computed() -> None:
    # c = gamma / sqrt(var + eps) = 4 / sqrt(3 + 1) = 2 ; b' = c * (0 - mean) + beta
    w, b = fold_bn_weights(
        torch.tensor([[1.0, 2.0]]),
        None,
        mean=torch.tensor([1.0]),
        var=torch.tensor([3.0]),
        eps=1.0,
        gamma=torch.tensor([4.0]),
        beta=torch.tensor([0.5]),
    )
    assert torch.equal(w, torch.tensor([[2.0, 4.0]]))
    assert torch.equal(b, torch.tensor([-1.5]))


def _bn_stats(c: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(c, generator=g),
        torch.rand(c, generator=g) + 0.1,
        torch.randn(c, generator=g),
        torch.randn(c, generator=g),
    )


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(8, 4, 3, 3), (8, 1, 3, 3), (8, 4, 5), (8, 16)])
def test_fold_bn_weights_matches_pytorch_fusion(shape: tuple[int, ...], bias: bool) -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(*shape, generator=g)
    b = torch.randn(8, generator=g) if bias else None
    mean, var, gamma, beta = _bn_stats(8, 2)
    w_in, b_in = w.clone(), None if b is None else b.clone()
    ours = fold_bn_weights(w, b, mean, var, 1e-5, gamma, beta)
    if len(shape) == 2:
        ref = fuse_linear_bn_weights(
            w, b if b is not None else torch.zeros(8), mean, var, 1e-5, gamma, beta
        )
    else:
        ref = fuse_conv_bn_weights(w, b, mean, var, 1e-5, gamma, beta)
    torch.testing.assert_close(ours[0], ref[0].detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours[1], ref[1].detach(), rtol=1e-6, atol=1e-6)
    assert torch.equal(w, w_in) and (b is None or torch.equal(b, b_in))  # inputs untouched


def _randomise_bn(model: nn.Module) -> nn.Module:
    for i, m in enumerate(model.modules()):
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            mean, var, gamma, beta = _bn_stats(m.num_features, 10 + i)
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.weight.data.copy_(gamma)
            m.bias.data.copy_(beta)
    return model.eval()


def _ir(model: nn.Module, x: torch.Tensor) -> IRModel:
    return exported_program_to_ir(torch.export.export(_randomise_bn(model), (x,)))


CASES = {
    "conv2d": (nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)), (2, 3, 8, 8)),
    "conv2d_no_bias": (
        nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)),
        (2, 3, 8, 8),
    ),
    "grouped": (nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.BatchNorm2d(8)), (2, 4, 8, 8)),
    "depthwise": (
        nn.Sequential(nn.Conv2d(8, 8, 3, groups=8, bias=False), nn.BatchNorm2d(8)),
        (2, 8, 6, 6),
    ),
    "conv1d": (nn.Sequential(nn.Conv1d(3, 8, 3), nn.BatchNorm1d(8)), (2, 3, 16)),
    "padding_same": (
        nn.Sequential(nn.Conv2d(3, 8, 3, padding="same"), nn.BatchNorm2d(8)),
        (2, 3, 8, 8),
    ),
    "linear_bn1d": (nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8)), (4, 6)),
    "linear_no_bias": (nn.Sequential(nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8)), (4, 6)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_folded_model_agrees_and_has_no_batch_norm(case: str) -> None:
    model, shape = CASES[case]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    ir = _ir(model, x)
    before = {k: v.clone() for k, v in ir.tensors.items()}
    folded, report = fold_batch_norm(ir)
    assert len(report.folded) == 1 and not report.unfolded
    assert all(n.op != BN_OP for n in folded.nodes)
    with torch.no_grad():
        ref, out = to_graph_module(ir)(x), to_graph_module(folded)(x)
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert all(torch.equal(ir.tensors[k], v) for k, v in before.items())  # input not mutated
    assert any(n.op == BN_OP for n in ir.nodes)


def test_batch_norms_that_cannot_fold_stay_and_are_reported() -> None:
    class TwoReaders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
            self.bn_after_relu = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y + self.bn_after_relu(torch.relu(y))

    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ir = _ir(TwoReaders(), x)
    folded, report = fold_batch_norm(ir)
    assert report.folded == ()
    reasons = sorted(report.unfolded.values())
    assert any("also read by other nodes" in r for r in reasons)
    assert any("follows aten.relu.default" in r for r in reasons)
    assert sum(n.op == BN_OP for n in folded.nodes) == 2


def test_linear_with_3d_output_is_not_folded() -> None:
    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.bn = nn.Linear(5, 5), nn.BatchNorm1d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(self.lin(x))  # BN over dim 1 (3), linear over dim 2 (5)

    ir = _ir(Seq(), torch.randn(2, 3, 5))
    _, report = fold_batch_norm(ir)
    assert report.folded == () and "not 2-D" in next(iter(report.unfolded.values()))


def test_training_mode_batch_norm_is_refused() -> None:
    ir = IRModel(
        inputs=(TensorSpec("x", (2, 2, 3, 3), "float32"),),
        nodes=(
            Node("conv", "aten.conv2d.default", (Ref("x"), Ref("w"))),
            Node(
                "bn", BN_OP, (Ref("conv"), None, None, Ref("m"), Ref("v"), True, 0.1, 1e-5, False)
            ),
        ),
        outputs=(Ref("bn"),),
        tensors={"w": torch.ones(2, 2, 1, 1), "m": torch.zeros(2), "v": torch.ones(2)},
    )
    with pytest.raises(TrainingModeError, match=r"model\.eval\(\)"):
        fold_batch_norm(ir)


def test_digits_folds_exactly_on_real_data(digits, digits_program) -> None:  # type: ignore[no-untyped-def]
    ir = exported_program_to_ir(digits_program)
    folded, report = fold_batch_norm(ir)
    assert len(report.folded) == 3 and not report.unfolded
    assert all(n.op != BN_OP for n in folded.nodes)
    x = torch.from_numpy(np.load(digits.npz)["x"])
    unfolded_gm, folded_gm = to_graph_module(ir), to_graph_module(folded)
    with torch.no_grad():
        ref = torch.cat([unfolded_gm(b) for b in x[:512].split(32)])
        out = torch.cat([folded_gm(b) for b in x[:512].split(32)])
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert (out.argmax(1) == ref.argmax(1)).all()
