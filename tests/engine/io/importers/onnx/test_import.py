"""The ONNX importer against onnxruntime as the reference, op by op and on real models."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from engine.errors import (
    ArchiveLimitError,
    OnnxExternalDataError,
    TrainingModeError,
    UnsupportedOpsError,
)
from engine.io.importers import exported_program_to_ir, import_model
from engine.io.importers.onnx import import_onnx
from engine.ir import IRModel, Ref, load_ir, save_ir, to_graph_module
from engine.transforms import inventory

LIMIT = 1 << 30
RNG = np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@dataclass
class Case:
    """A one-graph ONNX model: nodes, graph inputs (with values), initializers, opset."""

    id: str
    nodes: list[onnx.NodeProto]
    feeds: dict[str, np.ndarray]
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    opset: int = 17
    check: Callable[[IRModel], Any] | None = None

    def proto(self) -> onnx.ModelProto:
        inputs = [
            h.make_tensor_value_info(k, h.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for k, v in self.feeds.items()
        ]
        out = [h.make_empty_tensor_value_info(self.nodes[-1].output[0])]
        inits = [nh.from_array(v, k) for k, v in self.inits.items()]
        graph = h.make_graph(self.nodes, self.id, inputs, out, inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", self.opset)])
        model.ir_version = 8
        return model


def _run_ir(ir: IRModel, feeds: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        out = to_graph_module(ir)(*(torch.from_numpy(feeds[s.name]) for s in ir.inputs))
    return out.numpy()  # type: ignore[no-any-return]


def _compare(model: onnx.ModelProto | Path, feeds: dict[str, np.ndarray], tmp: Path) -> IRModel:
    """Import ``model``; assert IR (also after a save/load round trip) == onnxruntime."""
    path = model if isinstance(model, Path) else tmp / "m.onnx"
    if not isinstance(model, Path):
        path.write_bytes(model.SerializeToString())
    ir = import_onnx(path, max_bytes=LIMIT)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    save_ir(ir, tmp / "m.ir")
    for candidate in (ir, load_ir(tmp / "m.ir")):
        ours = _run_ir(candidate, feeds)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    return ir


def _ops(ir: IRModel) -> list[str]:
    return [n.op.split(".")[1] for n in ir.nodes]


def N(op: str, inputs: list[str], **attrs: Any) -> onnx.NodeProto:
    """One node ``op(inputs) -> y``, named like a torch.onnx scope."""
    return h.make_node(op, inputs, ["y"], name=f"/m/{op}", **attrs)


def _chain(*nodes: tuple[str, list[str], dict[str, Any]]) -> list[onnx.NodeProto]:
    """Nodes writing ``t0``, ``t1``, ... and finally ``y``."""
    out = []
    for i, (op, ins, attrs) in enumerate(nodes):
        name = "y" if i == len(nodes) - 1 else f"t{i}"
        out.append(h.make_node(op, ins, [name], name=f"n{i}", **attrs))
    return out


def _linear_bias(ir: IRModel) -> bool:
    return _ops(ir) == ["linear"] and ir.nodes[0].args[1:] == (Ref("W"), Ref("b"))


X4, X3, X2 = _f32(2, 3, 8, 8), _f32(2, 3, 10), _f32(4, 6)
I64 = np.array([[1, 0, 3], [2, 2, 1]], np.int64)
CASES = [
    Case("conv2d", [N("Conv", ["x", "W", "B"], pads=[1, 1, 1, 1])], {"x": X4},
         {"W": _f32(4, 3, 3, 3), "B": _f32(4)},
         check=lambda ir: ir.nodes[0].args[1:3] == (Ref("W"), Ref("B"))),
    Case("conv2d_stride_dilation_nobias",
         [N("Conv", ["x", "W"], strides=[2, 1], dilations=[1, 2])], {"x": X4},
         {"W": _f32(4, 3, 3, 3)}),
    Case("conv2d_asymmetric_pads", [N("Conv", ["x", "W"], pads=[0, 1, 2, 1])], {"x": X4},
         {"W": _f32(4, 3, 3, 3)}, check=lambda ir: _ops(ir) == ["constant_pad_nd", "conv2d"]),
    Case("conv2d_same_upper", [N("Conv", ["x", "W"], auto_pad="SAME_UPPER", strides=[2, 2])],
         {"x": X4}, {"W": _f32(4, 3, 4, 4)}),
    Case("conv2d_same_lower", [N("Conv", ["x", "W"], auto_pad="SAME_LOWER")], {"x": X4},
         {"W": _f32(4, 3, 2, 2)}),
    Case("conv2d_valid", [N("Conv", ["x", "W"], auto_pad="VALID")], {"x": X4},
         {"W": _f32(4, 3, 3, 3)}),
    Case("conv2d_depthwise", [N("Conv", ["x", "W"], group=3, pads=[1, 1, 1, 1])], {"x": X4},
         {"W": _f32(3, 1, 3, 3)}),
    Case("conv1d", [N("Conv", ["x", "W", "B"], pads=[1, 1])], {"x": X3},
         {"W": _f32(5, 3, 3), "B": _f32(5)}),
    Case("gemm_transB", [N("Gemm", ["x", "W", "b"], transB=1)], {"x": X2},
         {"W": _f32(5, 6), "b": _f32(5)}, check=_linear_bias),
    Case("gemm_weight_in_out", [N("Gemm", ["x", "W", "b"])], {"x": X2},
         {"W": _f32(6, 5), "b": _f32(1, 5)},
         check=lambda ir: ir.tensors["W"].shape == (5, 6) and _ops(ir) == ["linear"]),
    Case("gemm_alpha_beta_transA", [N("Gemm", ["x", "W", "C"], alpha=0.5, beta=2.0, transA=1)],
         {"x": _f32(6, 4)}, {"W": _f32(6, 5), "C": _f32(4, 5)}),
    Case("gemm_activation_B", [N("Gemm", ["x", "w"], transB=1)], {"x": X2, "w": _f32(3, 6)}),
    Case("matmul_weight", [N("MatMul", ["x", "W"])], {"x": X3}, {"W": _f32(10, 7)},
         check=lambda ir: _ops(ir) == ["linear"] and ir.tensors["W"].shape == (7, 10)),
    Case("matmul_add_is_linear", _chain(("MatMul", ["x", "W"], {}), ("Add", ["b", "t0"], {})),
         {"x": X3}, {"W": _f32(10, 7), "b": _f32(7)}, check=_linear_bias),
    Case("matmul_add_kept_apart_when_shared",  # the MatMul output is also read via an Identity
         _chain(("MatMul", ["x", "W"], {}), ("Identity", ["t0"], {}), ("Add", ["t1", "b"], {}),
                ("Relu", ["t0"], {}), ("Add", ["t2", "t3"], {})),
         {"x": X3}, {"W": _f32(10, 7), "b": _f32(7)},
         check=lambda ir: _ops(ir) == ["linear", "add", "relu", "add"]),
    Case("matmul_activations", [N("MatMul", ["x", "z"])], {"x": X3, "z": _f32(2, 10, 4)},
         check=lambda ir: _ops(ir) == ["matmul"]),
    Case("matmul_weight_first", [N("MatMul", ["W", "x"])], {"x": X3}, {"W": _f32(5, 3)}),
    Case("batch_norm", [N("BatchNormalization", ["x", "g", "b", "m", "v"], epsilon=1e-3)],
         {"x": X4},
         {"g": _f32(3), "b": _f32(3), "m": _f32(3), "v": np.abs(_f32(3)) + 0.5},
         check=lambda ir: ir.nodes[0].args[5:] == (False, 0.1, pytest.approx(1e-3), False)),
    *(Case(op.lower(), [N(op, ["x"])], {"x": X4})
      for op in ("Relu", "Sigmoid", "Tanh", "Erf", "Neg")),
    Case("sqrt", [N("Sqrt", ["x"])], {"x": np.abs(X4)}),
    Case("hardswish", [N("HardSwish", ["x"])], {"x": X4 * 4},
         check=lambda ir: _ops(ir) == ["hardswish"]),
    Case("hardsigmoid", [N("HardSigmoid", ["x"])], {"x": X4 * 4}),
    Case("hardsigmoid_torch", [N("HardSigmoid", ["x"], alpha=1 / 6)], {"x": X4 * 4},
         check=lambda ir: _ops(ir) == ["hardsigmoid"]),
    Case("clip", [N("Clip", ["x", "lo", "hi"])], {"x": X4},
         {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}),
    Case("clip_min_only", [N("Clip", ["x", "lo"])], {"x": X4}, {"lo": np.array(0.0, np.float32)}),
    Case("clip_opset9_attrs", [N("Clip", ["x"], min=-0.2, max=0.3)], {"x": X4}, opset=9),
    Case("add_broadcast", [N("Add", ["x", "c"])], {"x": X4}, {"c": _f32(3, 1, 1)}),
    Case("sub_scalar_first", [N("Sub", ["c", "x"])], {"x": X4}, {"c": np.array(1.5, np.float32)},
         check=lambda ir: _ops(ir) == ["rsub"] and not ir.tensors),
    Case("mul_scalar", [N("Mul", ["c", "x"])], {"x": X4}, {"c": np.array([0.25], np.float32)}),
    Case("div", [N("Div", ["x", "z"])], {"x": X4, "z": np.abs(X4) + 1}),
    Case("div_int_truncates", [N("Div", ["i", "d"])], {"i": I64 - 2}, {"d": np.array(2, np.int64)}),
    Case("pow_scalar", [N("Pow", ["x", "e"])], {"x": X4}, {"e": np.array(2.0, np.float32)}),
    Case("pow_tensor", [N("Pow", ["x", "e"])], {"x": np.abs(X4)}, {"e": _f32(8)}),
    Case("equal", [N("Equal", ["i", "j"])], {"i": I64, "j": I64[::-1].copy()}),
    Case("maxpool", [N("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2])], {"x": X4}),
    Case("maxpool_pads_ceil", [N("MaxPool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
         strides=[2, 2], ceil_mode=1)], {"x": _f32(1, 2, 7, 7)}),
    Case("maxpool_asymmetric", [N("MaxPool", ["x"], kernel_shape=[2, 2], pads=[0, 0, 1, 1])],
         {"x": -np.abs(X4)}),
    Case("maxpool_same_upper", [N("MaxPool", ["x"], kernel_shape=[3, 3], auto_pad="SAME_UPPER",
         strides=[2, 2])], {"x": X4}),
    Case("maxpool1d", [N("MaxPool", ["x"], kernel_shape=[3], strides=[2])], {"x": X3}),
    Case("avgpool", [N("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])], {"x": X4}),
    Case("avgpool_include_pad_asym", [N("AveragePool", ["x"], kernel_shape=[2, 2],
         pads=[1, 0, 0, 1], count_include_pad=1)], {"x": X4}),
    Case("global_avg_pool", [N("GlobalAveragePool", ["x"])], {"x": X4}),
    *(Case(f"flatten_axis{a}", [N("Flatten", ["x"], axis=a)], {"x": X4}) for a in (0, 1, 2, -1)),
    Case("reshape", [N("Reshape", ["x", "s"])], {"x": X4}, {"s": np.array([0, -1, 8], np.int64)}),
    Case("transpose_default", [N("Transpose", ["x"])], {"x": X4}),
    Case("transpose_perm", [N("Transpose", ["x"], perm=[0, 2, 3, 1])], {"x": X4}),
    Case("concat_const", [N("Concat", ["x", "c"], axis=-1)], {"x": X3}, {"c": _f32(2, 3, 2)}),
    Case("slice", [N("Slice", ["x", "s", "e", "a", "p"])], {"x": X4},
         {"s": np.array([1, -6], np.int64), "e": np.array([9, 2**62], np.int64),
          "a": np.array([-1, 2], np.int64), "p": np.array([2, 1], np.int64)}),
    Case("slice_negative_step", [N("Slice", ["x", "s", "e", "a", "p"])], {"x": X4},
         {"s": np.array([-1], np.int64), "e": np.array([-2**62], np.int64),
          "a": np.array([3], np.int64), "p": np.array([-2], np.int64)}),
    Case("slice_opset9_attrs", [N("Slice", ["x"], starts=[1], ends=[3], axes=[1])], {"x": X4},
         opset=9),
    Case("squeeze", [N("Squeeze", ["x", "a"])], {"x": _f32(2, 1, 3, 1)},
         {"a": np.array([-1], np.int64)}),
    Case("squeeze_all_opset11", [N("Squeeze", ["x"])], {"x": _f32(2, 1, 3, 1)}, opset=11),
    Case("unsqueeze", [N("Unsqueeze", ["x", "a"])], {"x": X2}, {"a": np.array([-1, 0], np.int64)}),
    Case("unsqueeze_opset11_attr", [N("Unsqueeze", ["x"], axes=[1])], {"x": X2}, opset=11),
    Case("gather_embedding", [N("Gather", ["E", "i"])], {"i": I64}, {"E": _f32(5, 4)},
         check=lambda ir: _ops(ir) == ["embedding"] and ir.nodes[0].args[0] == Ref("E")),
    Case("gather_embedding_const_negative",
         _chain(("Gather", ["E", "k"], {}), ("Add", ["t0", "x"], {})),
         {"x": _f32(3, 4)}, {"E": _f32(5, 4), "k": np.array([[0, -1, 2], [-5, 4, 1]], np.int64)},
         check=lambda ir: _ops(ir) == ["embedding", "add"]),
    Case("gather_const_scalar", [N("Gather", ["x", "k"], axis=2)], {"x": X4},
         {"k": np.array(-1, np.int64)}),
    Case("gather_const_indices", [N("Gather", ["x", "k"], axis=1)], {"x": X4},
         {"k": np.array([[2, -3], [0, 1]], np.int64)}),
    Case("gather_runtime_indices", [N("Gather", ["x", "i"], axis=3)], {"x": X4, "i": I64 + 4}),
    Case("softmax", [N("Softmax", ["x"], axis=1)], {"x": X4}),
    Case("softmax_opset11_coerced", [N("Softmax", ["x"], axis=1)], {"x": X3}, opset=11),
    Case("layer_norm", [N("LayerNormalization", ["x", "g", "b"], axis=-2, epsilon=1e-3)], {"x": X4},
         {"g": _f32(8, 8), "b": _f32(8, 8)}),
    Case("reduce_mean_attr", [N("ReduceMean", ["x"], axes=[1, -1])], {"x": X4}, opset=13),
    Case("reduce_mean_input", [N("ReduceMean", ["x", "a"], keepdims=0)], {"x": X4},
         {"a": np.array([2], np.int64)}, opset=18),
    Case("reduce_sum_input", [N("ReduceSum", ["x", "a"], keepdims=0)], {"x": X4},
         {"a": np.array([1, 2], np.int64)}),
    Case("reduce_sum_all_opset11", [N("ReduceSum", ["x"])], {"x": X4}, opset=11),
    Case("reduce_sum_noop", [N("ReduceSum", ["x"], noop_with_empty_axes=1)], {"x": X4}),
    Case("cast_int_to_float", [N("Cast", ["i"], to=T.FLOAT)], {"i": I64}),
    Case("cast_float_to_int", [N("Cast", ["x"], to=T.INT32)], {"x": X4 * 10}),
    Case("constant",
         _chain(("Constant", [], {"value": nh.from_array(_f32(8))}), ("Add", ["x", "t0"], {})),
         {"x": X4}),
    Case("constant_value_float",
         _chain(("Constant", [], {"value_float": 3.0}), ("Mul", ["x", "t0"], {})),
         {"x": X4}),
    Case("identity", [N("Identity", ["x"])], {"x": X4}),
    Case("dropout", [h.make_node("Dropout", ["x", "r"], ["y", "mask"])], {"x": X4},
         {"r": np.array(0.5, np.float32)}),
    Case("dropout_opset10", [N("Dropout", ["x"], ratio=0.3)], {"x": X4}, opset=10),
    Case("shape_chain_folds",
         _chain(("Shape", ["x"], {}), ("Gather", ["t0", "zero"], {}),
                ("Unsqueeze", ["t1", "zero"], {}), ("Concat", ["t2", "minus1"], {"axis": 0}),
                ("Reshape", ["x", "t3"], {})),
         {"x": X4}, {"zero": np.array(0, np.int64), "minus1": np.array([-1], np.int64)},
         check=lambda ir: _ops(ir) == ["reshape"] and ir.nodes[0].args[1] == [2, -1]),
    Case("shape_start_end",
         _chain(("Shape", ["x"], {"start": 1, "end": -1}), ("Reshape", ["x2", "t0"], {})),
         {"x": X4, "x2": _f32(24, 1)}, opset=15),
    Case("where", [N("Where", ["m", "x", "z"])], {"m": X4 > 0, "x": X4},
         {"z": np.array(-1.0, np.float32)}),
    Case("expand_bidirectional", [N("Expand", ["x", "s"])], {"x": _f32(3, 1)},
         {"s": np.array([2, 1, 4], np.int64)}),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_onnxruntime(case: Case, tmp_path: Path) -> None:
    ir = _compare(case.proto(), case.feeds, tmp_path)
    if case.check is not None:
        assert case.check(ir), f"IR check failed: {[(n.op, n.args) for n in ir.nodes]}"


def test_every_supported_op_has_a_parity_case() -> None:
    from engine.io.importers.onnx import SUPPORTED_ONNX_OPS
    from tests.engine.io.importers.onnx import test_ops_math, test_ops_more

    cases = [*CASES, *test_ops_more.CASES, *test_ops_math.CASES]
    covered = {n.op_type for c in cases for n in c.nodes}
    assert covered >= SUPPORTED_ONNX_OPS, SUPPORTED_ONNX_OPS - covered


# -- real models -------------------------------------------------------------------------------


def _max_diff(path: Path, ir: IRModel, batches: list[dict[str, np.ndarray]]) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs = [np.abs(_run_ir(ir, f) - session.run(None, f)[0]).max() for f in batches]
    return float(max(diffs))


def test_digits_cnn_matches_onnxruntime_and_the_pt2_layer_names(  # type: ignore[no-untyped-def]
    digits, digits_program
) -> None:
    ir = import_onnx(digits.onnx, max_bytes=LIMIT)
    x = np.load(digits.npz)["x"]
    batches = [{"x": x[i : i + 32]} for i in range(0, len(x) - 31, 32)]
    assert len(batches) == 16 and _max_diff(digits.onnx, ir, batches) <= 1e-4
    layers = inventory(ir).layers
    # torch.onnx folds each BN into its conv and names the results onnx::Conv_*; the importer
    # names them back after the module path, so the layers match the torch.export import
    pt2_layers = inventory(exported_program_to_ir(digits_program)).layers
    assert [layer.name for layer in layers] == [
        "features.0",
        "features.4",
        "features.7",
        "classifier",
    ]
    assert [(la.name, la.kind, la.weight_shape, la.macs) for la in layers] == [
        (lb.name, lb.kind, lb.weight_shape, lb.macs) for lb in pt2_layers
    ]
    assert import_model(digits.onnx).kind == "onnx"


@pytest.mark.real_model
def test_minilm_matches_onnxruntime_and_has_36_linear_and_3_embeddings(minilm) -> None:  # type: ignore[no-untyped-def]
    ir = import_onnx(minilm.onnx, max_bytes=LIMIT)
    arrays = np.load(minilm.npz)
    names = ("input_ids", "attention_mask", "token_type_ids")
    batches = [{n: arrays[n][i : i + 32] for n in names} for i in (0, 32)]
    assert _max_diff(minilm.onnx, ir, batches) <= 1e-4
    layers = inventory(ir).layers
    kinds = [layer.kind for layer in layers]
    assert kinds.count("linear") == 36 and kinds.count("embedding") == 3 and len(kinds) == 39
    # the same layers, names, shapes and MACs as the torch.export import of the same model
    pt2_layers = inventory(exported_program_to_ir(torch.export.load(minilm.pt2))).layers
    assert [(la.name, la.kind, la.weight_shape, la.macs) for la in layers] == [
        (lb.name, lb.kind, lb.weight_shape, lb.macs) for lb in pt2_layers
    ]
    assert {"encoder.layer.5.output.dense", "embeddings.position_embeddings"} <= {
        layer.name for layer in layers
    }
    assert all(
        n.op != "aten.matmul.default" or not set(n.refs()) & set(ir.tensors) for n in ir.nodes
    )


# -- refusals ----------------------------------------------------------------------------------


def _write(tmp: Path, model: onnx.ModelProto) -> Path:
    path = tmp / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_unsupported_ops_are_all_listed_at_once(tmp_path: Path) -> None:
    nodes = _chain(("Relu", ["x"], {}), ("BitShift", ["t0"], {}), ("Foo", ["t1"], {}))
    nodes.append(h.make_node("FusedMatMul", ["y", "y"], ["z"], domain="com.microsoft"))
    with pytest.raises(UnsupportedOpsError, match="3 operator type") as err:
        import_onnx(_write(tmp_path, Case("u", nodes, {"x": X2}).proto()), max_bytes=LIMIT)
    assert all(op in err.value.message for op in ("BitShift", "Foo", "com.microsoft.FusedMatMul"))


@pytest.mark.parametrize("dim0", ["batch", None], ids=["param", "unknown"])
def test_dynamic_batch_is_imported_and_runs_at_any_batch(dim0: str | None, tmp_path: Path) -> None:
    model = Case("d", [N("Relu", ["x"])], {"x": X2}).proto()
    model.graph.input[0].CopyFrom(h.make_tensor_value_info("x", T.FLOAT, [dim0, 6]))
    ir = import_model(_write(tmp_path, model)).ir
    assert ir.batch is not None and ir.inputs[0].shape[1:] == (6,)
    x = torch.randn(5, 6)
    assert torch.equal(to_graph_module(ir.at_batch(5))(x), x.relu())


@pytest.mark.parametrize(
    ("shape", "match"),
    [([4, "seq"], "dimension 1 is dynamic"), ([4, None], "dimension 1 is dynamic"), (None, "rank")],
    ids=["param", "unknown", "rank"],
)
def test_dynamic_non_batch_dims_are_refused(
    shape: list[Any] | None, match: str, tmp_path: Path
) -> None:
    model = Case("d", [N("Relu", ["x"])], {"x": X2}).proto()
    model.graph.input[0].CopyFrom(h.make_tensor_value_info("x", T.FLOAT, shape))
    with pytest.raises(UnsupportedOpsError, match=match):
        import_onnx(_write(tmp_path, model), max_bytes=LIMIT)


def test_shape_operand_computed_at_run_time_is_refused(tmp_path: Path) -> None:
    case = Case("r", [N("Reshape", ["x", "s"])], {"x": X2, "s": np.array([24], np.int64)})
    with pytest.raises(UnsupportedOpsError, match="computed at run time"):
        import_onnx(_write(tmp_path, case.proto()), max_bytes=LIMIT)


def test_training_mode_batch_norm_and_old_opsets_are_refused(tmp_path: Path) -> None:
    bn = N("BatchNormalization", ["x", "g", "g", "g", "g"], training_mode=1)
    case = Case("bn", [bn], {"x": X4}, {"g": np.ones(3, np.float32)}, opset=15)
    with pytest.raises(TrainingModeError, match=r"model\.eval\(\)"):
        import_onnx(_write(tmp_path, case.proto()), max_bytes=LIMIT)
    with pytest.raises(UnsupportedOpsError, match="opset 6"):
        import_onnx(
            _write(tmp_path, Case("o", [N("Relu", ["x"])], {"x": X2}, opset=6).proto()),
            max_bytes=LIMIT,
        )


def test_file_over_max_bytes_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.onnx"
    path.write_bytes(b"\x08" + b"\xff" * 4096)  # not even valid protobuf: never decoded
    with pytest.raises(ArchiveLimitError, match="over the limit of 4000 bytes"):
        import_onnx(path, max_bytes=4000)


def test_tensor_names_cannot_reach_generated_code(tmp_path: Path) -> None:
    evil = 'w")+print("pwned")+getattr(self, "x'
    nodes = _chain(("Add", ["x", evil], {}), ("Add", ["t0", "a"], {}), ("Add", ["t1", "a.b"], {}))
    inits = {evil: _f32(6), "a": _f32(6), "a.b": _f32(6)}  # "a" would be a submodule of "a.b"
    ir = _compare(Case("n", nodes, {"x": X2}, inits).proto(), {"x": X2}, tmp_path)
    assert "print(" not in to_graph_module(ir).code
    assert all(k.replace(".", "").replace("_", "").isalnum() for k in ir.tensors)


# -- external data -----------------------------------------------------------------------------


def _external_model(tmp: Path, location: str = "w.bin") -> tuple[Path, onnx.ModelProto]:
    """A MatMul model whose weight lives in ``model/<location>``; the .onnx is in ``model/``."""
    folder = tmp / "model"
    (folder / Path(location).parent).mkdir(parents=True, exist_ok=True)
    model = Case("e", [N("MatMul", ["x", "W"])], {"x": X2}, {"W": _f32(6, 64)}).proto()
    path = folder / "m.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location=location, size_threshold=0)
    return path, model


def _point_to(path: Path, location: str, **extra: str) -> None:
    model = onnx.load(path, load_external_data=False)
    entries = {"location": location, **extra}
    del model.graph.initializer[0].external_data[:]
    for k, v in entries.items():
        model.graph.initializer[0].external_data.add(key=k, value=v)
    path.write_bytes(model.SerializeToString())


@pytest.mark.parametrize("location", ["w.bin", "data/w.bin"])
def test_external_data_inside_the_model_directory_is_read(location: str, tmp_path: Path) -> None:
    path, _ = _external_model(tmp_path, location)
    ir = _compare(path, {"x": X2}, tmp_path)
    assert ir.tensors["W"].shape == (64, 6)


def test_external_data_escaping_the_directory_is_refused(tmp_path: Path) -> None:
    path, _ = _external_model(tmp_path)
    outside = tmp_path / "secret.bin"
    outside.write_bytes((path.parent / "w.bin").read_bytes())
    (path.parent / "link.bin").symlink_to(outside)
    for location, message in [
        ("../secret.bin", "outside the model's directory"),
        (str(outside), "absolute path"),
        (str(path.parent / "w.bin"), "absolute path"),  # absolute even when inside
        ("link.bin", "outside the model's directory"),
        ("missing.bin", "missing"),
    ]:
        _point_to(path, location)
        with pytest.raises(OnnxExternalDataError, match=message):
            import_onnx(path, max_bytes=LIMIT)


def test_external_data_offsets_and_total_size_are_bounded(tmp_path: Path) -> None:
    path, _ = _external_model(tmp_path)
    size = os.path.getsize(path.parent / "w.bin")
    _point_to(path, "w.bin", offset="8", length=str(size))
    with pytest.raises(OnnxExternalDataError, match="does not match"):
        import_onnx(path, max_bytes=LIMIT)
    _point_to(path, "w.bin")
    limit = os.path.getsize(path) + size - 1
    with pytest.raises(ArchiveLimitError, match="external data"):
        import_onnx(path, max_bytes=limit)
    assert import_onnx(path, max_bytes=limit + 1).tensors["W"].shape == (64, 6)


_BAD_USES = [
    Case("maxpool_dilated_same", [N("MaxPool", ["x"], kernel_shape=[2, 2], dilations=[2, 2],
         auto_pad="SAME_UPPER")], {"x": X4}),
    Case("conv3d", [N("Conv", ["x", "W"])], {"x": _f32(1, 3, 4, 4, 4)}, {"W": _f32(2, 3, 1, 1, 1)}),
    Case("avgpool_asymmetric_exclude_pad", [N("AveragePool", ["x"], kernel_shape=[2, 2],
         pads=[0, 0, 1, 1])], {"x": X4}),
    Case("clip_runtime_bound", [N("Clip", ["x", "lo"])], {"x": X2, "lo": np.zeros((), np.float32)}),
    Case("maxpool_indices_read", [h.make_node("MaxPool", ["x"], ["t", "i"], kernel_shape=[2, 2]),
         N("Cast", ["i"], to=T.FLOAT)], {"x": X4}),
    Case("cast_to_uint16", [N("Cast", ["x"], to=T.UINT16)], {"x": X2}),
]  # fmt: skip
_BAD_MESSAGES = [
    "explicit pads", "1-D and 2-D", "count_include_pad=0", "computed at run time",
    "optional output", "ONNX data type 4",
]  # fmt: skip


@pytest.mark.parametrize(("case", "message"), zip(_BAD_USES, _BAD_MESSAGES, strict=True),
                         ids=[c.id for c in _BAD_USES])  # fmt: skip
def test_unsupported_uses_of_supported_ops_are_refused(
    case: Case, message: str, tmp_path: Path
) -> None:
    with pytest.raises(UnsupportedOpsError, match=message):
        import_onnx(_write(tmp_path, case.proto()), max_bytes=LIMIT)


def test_constants_made_at_import_are_bounded(tmp_path: Path) -> None:
    shape = np.array([1 << 16, 1 << 16], np.int64)  # a 16 GiB float32 constant from 4 bytes
    nodes = _chain(("Expand", ["c", "s"], {}), ("Add", ["t0", "x"], {}))
    case = Case("big", nodes, {"x": X2}, {"c": np.ones((), np.float32), "s": shape})
    with pytest.raises(ArchiveLimitError, match="constants made at import"):
        import_onnx(_write(tmp_path, case.proto()), max_bytes=LIMIT)


class _Block(torch.nn.Module):
    """Conv -> BN -> HardSwish -> AvgPool -> Linear -> HardSigmoid, as torch.onnx writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.pool = torch.nn.AvgPool2d(2)
        self.fc = torch.nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(torch.nn.functional.hardswish(self.bn(self.conv(x))))
        return torch.nn.functional.hardsigmoid(self.fc(y.flatten(1)))


def test_torch_exported_block_keeps_batch_norm_foldable(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _Block().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 8, 8)
    path = tmp_path / "block.onnx"
    torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE)  # fmt: skip
    ir = _compare(path, {"x": x.numpy()}, tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(to_graph_module(ir)(x), model(x), rtol=1e-5, atol=1e-5)
    layers = inventory(ir).layers
    assert [(la.name, la.kind, la.bn_follows) for la in layers] == [
        ("conv", "conv2d", True), ("fc", "linear", False),
    ]  # fmt: skip


def test_inputs_torch_onnx_names_itself_become_ir_names(tmp_path: Path) -> None:
    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], -1).relu()

    path = tmp_path / "noname.onnx"
    x = torch.randn(2, 3, 4)
    torch.onnx.export(Flat(), (x,), str(path), dynamo=False)  # no input_names
    assert onnx.load(str(path)).graph.input[0].name == "onnx::Reshape_0"
    ir = import_model(path).ir
    assert [s.name for s in ir.inputs] == ["onnx__Reshape_0"]
    assert torch.equal(to_graph_module(ir)(x), Flat()(x))
