"""Bias correction: by hand, the mean output it restores, which biases it may touch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.errors import InvalidPlanError
from engine.io.importers import exported_program_to_ir
from engine.ir import IRModel, Node, Ref, TensorSpec
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, bias_operand, bias_shift, corrected_bias, inventory


def test_shift_by_hand() -> None:
    w = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    q = torch.tensor([[1.5, 2.0], [0.25, -1.0]])  # Q - W = [[0.5, 0], [0.25, 0]]
    means = [torch.tensor([2.0, 3.0], dtype=torch.float64)]
    assert bias_shift(w, q, means).tolist() == [1.0, 0.5]  # 0.5 * 2, 0.25 * 2
    b = torch.tensor([0.25, 0.0])
    assert corrected_bias(b, w, q, means).tolist() == [-0.75, -0.5]
    assert b.tolist() == [0.25, 0.0]  # not modified


def test_groups_use_their_own_mean() -> None:
    w = torch.zeros(4, 1, 2)  # 2 groups of 2 output channels, 2 inputs each
    q = torch.ones(4, 1, 2)
    means = [torch.tensor([1.0, 1.0]), torch.tensor([3.0, -1.0])]
    assert bias_shift(w, q, means).tolist() == [2.0, 2.0, 2.0, 2.0]
    means = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])]
    assert bias_shift(w, q, means).tolist() == [3.0, 3.0, 7.0, 7.0]
    with pytest.raises(ValueError, match="split"):
        bias_shift(w, q, means * 3)
    with pytest.raises(ValueError, match="differs"):
        bias_shift(w, q[:2], means)


def test_bias_operand() -> None:
    x, w, b = Ref("x"), Ref("w"), Ref("b")
    assert bias_operand(Node("c", "aten.conv2d.default", (x, w, b, [1, 1]))) == "b"
    assert bias_operand(Node("c", "aten.conv2d.default", (x, w), {"bias": b})) == "b"
    assert bias_operand(Node("c", "aten.conv2d.default", (x, w, None))) is None
    assert bias_operand(Node("l", "aten.linear.default", (x, w, b))) == "b"
    assert bias_operand(Node("l", "aten.linear.default", (x, w))) is None
    assert bias_operand(Node("a", "aten.addmm.default", (b, x, w))) == "b"
    assert bias_operand(Node("m", "aten.matmul.default", (x, w))) is None


@pytest.mark.parametrize(
    ("layer", "shape", "channel"),
    [
        (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), (8, 4, 9, 9), 1),
        (nn.Linear(16, 8), (8, 5, 16), -1),
    ],
    ids=["conv_grouped_padded", "linear_3d"],
)
def test_the_corrected_layer_keeps_the_float_mean_output(
    layer: nn.Module, shape, channel: int
) -> None:  # type: ignore[no-untyped-def]
    """Over the calibration data, mean(y_quantized) = mean(y_float) per output channel."""
    g = torch.Generator().manual_seed(0)
    layer = layer.eval()
    batches = [(torch.rand(*shape, generator=g),) for _ in range(3)]  # inputs all positive
    ir = exported_program_to_ir(torch.export.export(layer, batches[0]))
    names = [info.name for info in inventory(ir).layers]

    def mean_output(module: torch.nn.Module) -> torch.Tensor:
        with torch.no_grad():
            out = torch.cat([module(*b).double().movedim(channel, 0) for b in batches], 1)
        return out.reshape(out.shape[0], -1).mean(1)

    fp32 = mean_output(layer)
    for rounding in ("nearest", "gptq"):
        fmt = LayerFormat("int2", "float", rounding=rounding, bias_correction=True)
        corrected = apply(ir, QuantPlan.uniform(names, fmt), batches)
        plain_fmt = LayerFormat("int2", "float", rounding=rounding)
        plain = apply(ir, QuantPlan.uniform(names, plain_fmt), batches)
        torch.testing.assert_close(mean_output(corrected.module()), fp32, rtol=0, atol=1e-5)
        assert (mean_output(plain.module()) - fp32).abs().max() > 1e-2  # there was a shift
        assert torch.equal(corrected.weights[names[0]].values, plain.weights[names[0]].values)


def test_a_shared_bias_is_left_alone() -> None:
    g = torch.Generator().manual_seed(0)
    x, bias = Ref("x"), Ref("b")
    ir = IRModel(
        inputs=(TensorSpec("x", (4, 3), "float32"),),
        nodes=(
            Node("fc1", "aten.linear.default", (x, Ref("w1"), bias)),
            Node("fc2", "aten.linear.default", (x, Ref("w2"), bias)),
            Node("sum", "aten.add.Tensor", (Ref("fc1"), Ref("fc2"))),
        ),
        outputs=(Ref("sum"),),
        tensors={
            "w1": torch.randn(2, 3, generator=g),
            "w2": torch.randn(2, 3, generator=g),
            "b": torch.tensor([0.5, -0.5]),
        },
    )
    fmt = LayerFormat("int2", "float", bias_correction=True)
    qm = apply(ir, QuantPlan.uniform(["fc1", "fc2"], fmt), [(torch.rand(4, 3, generator=g),)])
    assert not torch.equal(qm.ir.tensors["w1"], ir.tensors["w1"])  # quantized ...
    assert torch.equal(qm.ir.tensors["b"], ir.tensors["b"])  # ... but the shared bias kept


def test_float_formats_take_no_bias_correction() -> None:
    with pytest.raises(InvalidPlanError, match="bias correction"):
        LayerFormat("fp16", bias_correction=True)
    with pytest.raises(InvalidPlanError, match="true or false"):
        LayerFormat("int4", bias_correction=1)  # type: ignore[arg-type]
