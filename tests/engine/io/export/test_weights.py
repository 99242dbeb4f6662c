"""Each weight format, exported and dequantized by onnxruntime, equals MPQ's weight bit for bit."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from engine.io.export import export_onnx
from engine.ir import IRModel, Node, Ref, TensorSpec
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply
from tests.engine.io.export._ort import session as _session

torch.set_num_threads(1)


def conv_ir(weight: torch.Tensor, x_shape: tuple[int, ...]) -> IRModel:
    """``conv2d(x, w, b, stride 1, padding 1)``."""
    node = Node(
        "conv", "aten.conv2d.default", (Ref("x"), Ref("c.weight"), Ref("c.bias"), [1, 1], [1, 1])
    )
    tensors = {"c.weight": weight, "c.bias": torch.arange(weight.shape[0], dtype=torch.float32)}
    return IRModel((TensorSpec("x", x_shape, "float32"),), (node,), (Ref("conv"),), tensors)


def linear_ir(weight: torch.Tensor, x_shape: tuple[int, ...]) -> IRModel:
    """``linear(x, w, b) = x @ w^T + b``."""
    node = Node("fc", "aten.linear.default", (Ref("x"), Ref("fc.weight"), Ref("fc.bias")))
    tensors = {"fc.weight": weight, "fc.bias": torch.full((weight.shape[0],), 0.5)}
    return IRModel((TensorSpec("x", x_shape, "float32"),), (node,), (Ref("fc"),), tensors)


def _dequantized(data: bytes, op_type: str, x: torch.Tensor) -> np.ndarray:
    """The weight operand of the model's one ``op_type`` node, as onnxruntime computes it."""
    model = onnx.load_from_string(data)
    (layer,) = [n for n in model.graph.node if n.op_type == op_type]
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(layer.input[1]))
    return _session(model.SerializeToString()).run([layer.input[1]], {"x": x.numpy()})[0]


FORMATS = [
    LayerFormat("int8", "float"),
    LayerFormat("int4", "float"),
    LayerFormat("int3", "float"),
    LayerFormat("int2", "float"),
    LayerFormat("int16", "float"),
    LayerFormat("int4g32", "float"),
    LayerFormat("int8g32", "float", outliers=3),
    LayerFormat("cb16", "float"),
    LayerFormat("cb2", "float", outliers=2),
    LayerFormat("fp16", "float"),
]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f.weight}-o{f.outliers}")
@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_dequantized_weight_is_bit_identical(kind: str, fmt: LayerFormat) -> None:
    gen = torch.Generator().manual_seed(0)
    if kind == "conv":  # 8 * 2 * 2 = 32 inputs per output channel: one group of 32
        w, x = torch.randn(4, 8, 2, 2, generator=gen), torch.randn(2, 8, 5, 5, generator=gen)
        ir, layer, op_type = conv_ir(w, tuple(x.shape)), "c", "Conv"
    else:
        w, x = torch.randn(6, 64, generator=gen), torch.randn(3, 64, generator=gen)
        ir, layer, op_type = linear_ir(w, tuple(x.shape)), "fc", "MatMul"
    qm = apply(ir, QuantPlan({layer: fmt}), [(x,)])
    exported = export_onnx(qm)
    onnx.checker.check_model(onnx.load_from_string(exported.data), full_check=True)
    got = torch.from_numpy(_dequantized(exported.data, op_type, x))
    want = qm.weights[layer].values
    assert torch.equal(got, want if kind == "conv" else want.T)  # MatMul takes W^T
    with torch.no_grad():
        ref = qm.module()(x)
    out = torch.from_numpy(_session(exported.data).run(None, {"x": x.numpy()})[0])
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_conv_matches_onnxruntime_exactly() -> None:
    # int4 weights whose row maximum is 7 * 0.25: scale 0.25, codes = w / 0.25; integer inputs:
    # every product and sum is exact in float32, so torch and onnxruntime agree exactly
    w = torch.tensor([[[[1.75, -0.5], [0.25, 0.0]]], [[[-1.75, 1.0], [0.75, -0.25]]]])
    x = torch.tensor([[[[1.0, 2.0, -3.0], [0.0, 4.0, 1.0], [-2.0, 1.0, 5.0]]]])
    qm = apply(conv_ir(w, (1, 1, 3, 3)), QuantPlan({"c": LayerFormat("int4", "float")}), [(x,)])
    assert qm.weights["c"].codes is not None
    assert qm.weights["c"].codes.flatten().tolist() == [7, -2, 1, 0, -7, 4, 3, -1]
    exported = export_onnx(qm)
    out = _session(exported.data, optimize=True).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ref = qm.module()(x)
    # the same weights and products; onnxruntime 1.32's float32 MatMul sums in its own
    # order (-0.15000004 against -0.14999999 here), so equal up to float32 rounding
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-6, atol=1e-6)
    # output (1, 1) of channel 0 sees input rows 0-1, cols 0-1 (padding 1), bias 0:
    # 1.75 * 1 - 0.5 * 2 + 0.25 * 0 + 0 * 4 = 0.75
    assert out[0, 0, 1, 1] == 0.75


def test_linear_matches_onnxruntime_to_float32_rounding() -> None:
    w = torch.tensor([[0.7, -0.3, 0.0, 0.1], [1.0, 0.6, -1.0, 0.25]])  # int4 scales 0.1, 1/7
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]])
    qm = apply(linear_ir(w, (2, 4)), QuantPlan({"fc": LayerFormat("int4", "float")}), [(x,)])
    assert qm.weights["fc"].codes is not None
    assert qm.weights["fc"].codes.tolist() == [[7, -3, 0, 1], [7, 4, -7, 2]]
    exported = export_onnx(qm)
    assert "INT4" in exported.report.layers[0].stored_as
    out = _session(exported.data).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        ref = qm.module()(x)
    # the same weights and products; onnxruntime 1.32's float32 MatMul sums in its own
    # order (-0.15000004 against -0.14999999 here), so equal up to float32 rounding
    torch.testing.assert_close(torch.from_numpy(out), ref, rtol=1e-6, atol=1e-6)


def test_activation_qdq_is_within_one_step_of_fake_quant() -> None:
    gen = torch.Generator().manual_seed(1)
    w, x = torch.randn(6, 64, generator=gen), torch.randn(3, 64, generator=gen)
    for act in ("a8", "a4", "a16"):
        qm = apply(linear_ir(w, (3, 64)), QuantPlan({"fc": LayerFormat("int8", act)}), [(x,)])
        exported = export_onnx(qm)
        out = _session(exported.data).run(None, {"x": x.numpy()})[0]
        with torch.no_grad():
            ref = qm.module()(x)
        step = qm.activations["fc"].scale.item() * w.abs().sum(1).max().item()
        assert float((torch.from_numpy(out) - ref).abs().max()) <= step + 1e-5
        want = {"a8": "uint8", "a4": "uint8", "a16": "uint16"}[act]
        assert exported.report.activations == {want: 1}
