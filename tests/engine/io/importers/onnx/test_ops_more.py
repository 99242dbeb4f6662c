"""The ONNX ops real exports add -- padding, constants from shapes, resizing, splitting,
indexing, scans -- against onnxruntime op by op, and their refusals. (Math, activations,
reductions, norms and einsum: test_ops_math.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx import import_onnx
from engine.ir import IRModel, infer_meta
from tests.engine.io.importers.onnx.test_import import LIMIT, Case, N, _chain, _compare, _ops

RNG = np.random.default_rng(1)


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def i64(*values: Any) -> np.ndarray:
    """A 1-D int64 array (``i64(3)`` has shape [1]; scalars are ``np.array(3, np.int64)``)."""
    return np.array(values, np.int64)


def proto(case: Case) -> onnx.ModelProto:
    """``case`` as a model, with the IR version its opset needs."""
    model = case.proto()
    model.ir_version = 10 if case.opset >= 21 else 9 if case.opset >= 19 else 8
    return model


def check_case(case: Case, tmp: Path) -> None:
    """The import of ``case`` matches onnxruntime, also on the meta device, and passes its check."""
    ir = _compare(proto(case), case.feeds, tmp)
    out = ir.outputs[0].name
    if out in {n.name for n in ir.nodes}:
        assert infer_meta(ir)[out][0] == ir.output_specs[0].shape
    if case.check is not None:
        assert case.check(ir), f"IR check failed: {[(n.op, n.args) for n in ir.nodes]}"


def only(*ops: str) -> Any:
    """An IR check: exactly these ops (``"linear"`` for ``aten.linear.default``), in order."""
    return lambda ir: _ops(ir) == list(ops)


def _multi(op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> onnx.NodeProto:
    return h.make_node(op, inputs, outputs, name=f"/m/{op}", **attrs)


def _s(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


def _scalar(v: int) -> np.ndarray:
    return np.array(v, np.int64)


X4, X3, X2 = f32(2, 3, 8, 8), f32(2, 3, 10), f32(4, 6)
TIES = np.array([[3, 1, 3, 0], [2, 2, 1, 2]], np.int64)
ASYM_FLOOR = {"coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
CORNERS = {"coordinate_transformation_mode": "align_corners"}

PAD = [
    Case("pad_constant", [N("Pad", ["x", "p", "v"])], {"x": X4},
         {"p": i64(0, 0, 1, 2, 0, 0, 3, 0), "v": np.array(1.5, np.float32)},
         check=only("constant_pad_nd")),
    Case("pad_negative_crops", [N("Pad", ["x", "p"])], {"x": X4},
         {"p": i64(0, 0, -1, 2, 0, 0, 1, -3)}),
    Case("pad_reflect", [N("Pad", ["x", "p"], mode="reflect")], {"x": X4},
         {"p": i64(0, 0, 2, 1, 0, 0, 1, 3)}, check=only("pad")),
    Case("pad_edge_1d", [N("Pad", ["x", "p"], mode="edge")], {"x": X3},
         {"p": i64(0, 0, 3, 0, 0, 2)}),
    Case("pad_wrap_opset19", [N("Pad", ["x", "p"], mode="wrap")], {"x": X4},
         {"p": i64(0, 0, 1, 2, 0, 0, 2, 1)}, opset=19),
    Case("pad_axes_opset18", [N("Pad", ["x", "p", "", "a"])], {"x": X4},
         {"p": i64(1, 2, 3, 0), "a": i64(-1, 2)}, opset=18),
    Case("pad_int", [N("Pad", ["i", "p", "v"])], {"i": TIES},
         {"p": i64(1, 0, 0, 2), "v": np.array(-7, np.int64)}),
    Case("pad_opset9_attrs", [N("Pad", ["x"], pads=[0, 0, 1, 1, 0, 0, 1, 1], value=2.0)],
         {"x": X4}, opset=9),
    Case("pad_tf_same_chain_folds",  # torch.onnx's TF-style "same" padding
         _chain(("ConstantOfShape", ["n"], {"value": nh.from_array(i64(0))}),
                ("Concat", ["p", "t0"], {"axis": 0}), ("Pad", ["x", "t1"], {})),
         {"x": X4}, {"n": i64(4), "p": i64(0, 0, 0, 1)}, check=only("constant_pad_nd")),
]  # fmt: skip
CREATE = [
    Case("constant_of_shape_default",
         _chain(("ConstantOfShape", ["s"], {}), ("Add", ["x", "t0"], {})), {"x": X4},
         {"s": i64(8)}),
    Case("constant_of_shape_int",
         _chain(("ConstantOfShape", ["s"], {"value": nh.from_array(i64(3))}),
                ("Mul", ["i", "t0"], {})), {"i": TIES}, {"s": i64(2, 4)}),
    Case("range_float", _chain(("Range", ["a", "l", "d"], {}), ("Add", ["x", "t0"], {})),
         {"x": X4}, {"a": _s(0.5)[0], "l": _s(4.5)[0], "d": _s(0.5)[0]}, check=only("add")),
    Case("range_int", _chain(("Range", ["a", "l", "d"], {}), ("Add", ["i", "t0"], {})),
         {"i": i64(1, 2, 3)}, {"a": _scalar(10), "l": _scalar(1), "d": _scalar(-4)}),
    Case("size", _chain(("Size", ["x"], {}), ("Cast", ["t0"], {"to": T.FLOAT}),
                        ("Mul", ["x", "t1"], {})), {"x": X2}),
    Case("non_zero_constant", _chain(("NonZero", ["c"], {}), ("Add", ["i", "t0"], {})),
         {"i": np.zeros((2, 3), np.int64)}, {"c": _s(0, 1.5, 2, 0, 0, 1).reshape(3, 2)}),
]  # fmt: skip
RESIZE = [
    Case("resize_nearest_scales",  # F.interpolate(mode="nearest") from the TorchScript exporter
         [N("Resize", ["x", "", "s"], mode="nearest", **ASYM_FLOOR)], {"x": X4},
         {"s": _s(1, 1, 2, 1.5)}, check=only("upsample_nearest2d")),
    Case("resize_nearest_sizes", [N("Resize", ["x", "", "", "z"], **ASYM_FLOOR)], {"x": X4},
         {"z": i64(2, 3, 13, 5)}),
    Case("resize_nearest_downsample_default_rounding",
         [N("Resize", ["x", "", "s"], coordinate_transformation_mode="asymmetric")], {"x": X4},
         {"s": _s(1, 1, 0.5, 0.25)}),
    Case("resize_nearest_exact", [N("Resize", ["x", "", "s"], nearest_mode="round_prefer_ceil")],
         {"x": X4}, {"s": _s(1, 1, 1.5, 0.75)}, check=only("_upsample_nearest_exact2d")),
    Case("resize_linear_scales", [N("Resize", ["x", "", "s"], mode="linear")], {"x": X4},
         {"s": _s(1, 1, 2, 2)}, check=only("upsample_bilinear2d")),
    Case("resize_linear_sizes", [N("Resize", ["x", "", "", "z"], mode="linear")], {"x": X4},
         {"z": i64(2, 3, 5, 11)}),
    Case("resize_linear_pytorch_half_pixel",
         [N("Resize", ["x", "", "", "z"], mode="linear",
            coordinate_transformation_mode="pytorch_half_pixel")],
         {"x": X4}, {"z": i64(2, 3, 16, 12)}),
    Case("resize_linear_align_corners", [N("Resize", ["x", "", "", "z"], mode="linear", **CORNERS)],
         {"x": X4}, {"z": i64(2, 3, 9, 17)}),
    Case("resize_linear_1d", [N("Resize", ["x", "", "s"], mode="linear")], {"x": X3},
         {"s": _s(1, 1, 2.5)}, check=only("upsample_linear1d")),
    Case("resize_nearest_1d", [N("Resize", ["x", "", "s"], **ASYM_FLOOR)], {"x": X3},
         {"s": _s(1, 1, 3)}, check=only("upsample_nearest1d")),
    Case("resize_cubic", [N("Resize", ["x", "", "s"], mode="cubic")], {"x": X4},
         {"s": _s(1, 1, 2, 2)}, check=only("upsample_bicubic2d")),
    Case("resize_cubic_align_corners", [N("Resize", ["x", "", "", "z"], mode="cubic", **CORNERS)],
         {"x": X4}, {"z": i64(2, 3, 12, 10)}),
    Case("resize_opset10", [N("Resize", ["x", "s"])], {"x": X4}, {"s": _s(1, 1, 2, 3)}, opset=10),
    Case("resize_opset11_empty_roi_scales", [N("Resize", ["x", "r", "s", "z"], mode="linear")],
         {"x": X4}, {"r": _s(), "s": _s(), "z": i64(2, 3, 4, 12)}, opset=11),
    Case("resize_axes_opset18", [N("Resize", ["x", "", "s"], mode="linear", axes=[3, 2])],
         {"x": X4}, {"s": _s(2, 0.5)}, opset=18),
    Case("resize_scale_keeping_size", [N("Resize", ["x", "", "s"], mode="linear")], {"x": X4},
         {"s": _s(1, 1, 1.1, 1)}, check=only("upsample_bilinear2d")),
    Case("resize_same_size_is_identity", [N("Resize", ["x", "", "", "z"])], {"x": X4},
         {"z": i64(2, 3, 8, 8)}, check=only()),
    Case("upsample_opset9", [N("Upsample", ["x", "s"])], {"x": X4}, {"s": _s(1, 1, 2, 2)}, opset=9),
    Case("upsample_opset7_attr", [N("Upsample", ["x"], scales=[1.0, 1.0, 3.0, 2.0])], {"x": X4},
         opset=7),
]  # fmt: skip
SPLIT = [
    Case("split_input_sizes",
         [_multi("Split", ["x", "s"], ["a", "b"], axis=-1), N("Concat", ["b", "a"], axis=-1)],
         {"x": X3}, {"s": i64(4, 6)}),
    Case("split_equal_opset11",
         [_multi("Split", ["x"], ["a", "b", "c"], axis=1), N("Sum", ["c", "a", "b"])],
         {"x": f32(2, 6, 3)}, opset=11),
    Case("split_attr_opset11_unread_output",
         [_multi("Split", ["x"], ["a", "b", "c"], axis=1, split=[1, 3, 2]), N("Mul", ["b", "b"])],
         {"x": f32(2, 6, 3)}, opset=11),
    Case("split_num_outputs_uneven_opset18",
         [_multi("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3),
          N("Concat", ["c", "b", "a"], axis=1)], {"x": f32(2, 7)}, opset=18),
]  # fmt: skip
INDEX = [
    Case("gather_elements_const", [N("GatherElements", ["x", "k"], axis=1)], {"x": X2},
         {"k": np.array([[0, -1], [5, 2], [1, 1], [-6, 3]], np.int64)}),
    Case("gather_elements_runtime", [N("GatherElements", ["x", "i"], axis=0)], {"x": X2},
         {"i": np.array([[3, 0, 1, 2, 3, 0]], np.int32)}),
    Case("gather_nd_const", [N("GatherND", ["x", "k"])], {"x": X3},
         {"k": np.array([[[0, 1], [1, -1]], [[-2, 0], [1, 2]]], np.int64)}),
    Case("gather_nd_runtime", [N("GatherND", ["x", "i"])],
         {"x": X3, "i": i64([1, 2, 9], [0, 0, 0])}),
    Case("tile", [N("Tile", ["x", "r"])], {"x": X3}, {"r": i64(1, 2, 3)}, check=only("repeat")),
    Case("trilu_upper_k", [N("Trilu", ["x", "k"])], {"x": X3}, {"k": _scalar(1)},
         check=only("triu")),
    Case("trilu_lower", [N("Trilu", ["x", "k"], upper=0)], {"x": X3}, {"k": _scalar(-1)}),
    Case("trilu_default", [N("Trilu", ["x"])], {"x": X2}),
    Case("cumsum", [N("CumSum", ["x", "a"])], {"x": X3}, {"a": _scalar(1)}),
    Case("cumsum_exclusive_reverse", [N("CumSum", ["x", "a"], exclusive=1, reverse=1)], {"x": X3},
         {"a": np.array(-1, np.int32)}),
    Case("cumsum_exclusive_int32", [N("CumSum", ["i", "a"], exclusive=1)],
         {"i": TIES.astype(np.int32)}, {"a": i64(1)}),
]  # fmt: skip
CASES = [*PAD, *CREATE, *RESIZE, *SPLIT, *INDEX]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_onnxruntime(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)


def import_case(case: Case, tmp: Path) -> IRModel:
    """Import ``case`` (without running it anywhere)."""
    path = tmp / "m.onnx"
    path.write_bytes(proto(case).SerializeToString())
    return import_onnx(path, max_bytes=LIMIT)


_REFUSED = [
    (Case("resize_linear_asymmetric", [N("Resize", ["x", "", "s"], mode="linear",
          coordinate_transformation_mode="asymmetric")], {"x": X4}, {"s": _s(1, 1, 2, 2)}),
     "linear with asymmetric"),
    (Case("resize_nearest_round_at_scale_3", [N("Resize", ["x", "", "s"],
          coordinate_transformation_mode="asymmetric")], {"x": X4}, {"s": _s(1, 1, 3, 3)}),
     "nearest_mode round_prefer_floor"),
    (Case("resize_tf_crop", [N("Resize", ["x", "r", "s"], mode="linear",
          coordinate_transformation_mode="tf_crop_and_resize")], {"x": X4},
          {"r": np.zeros(8, np.float32), "s": _s(1, 1, 2, 2)}), "tf_crop_and_resize"),
    (Case("resize_channels", [N("Resize", ["x", "", "s"])], {"x": X4}, {"s": _s(1, 2, 1, 1)}),
     "batch or channel"),
    (Case("upsample_linear", [N("Upsample", ["x", "s"], mode="linear")], {"x": X4},
          {"s": _s(1, 1, 2, 2)}, opset=9), "asymmetric"),
    (Case("non_zero_runtime", [N("NonZero", ["x"])], {"x": X2}), "depends on the data"),
    (Case("range_runtime", [N("Range", ["a", "l", "d"])],
          {"a": _scalar(0), "l": _scalar(4), "d": _scalar(1)}), "computed at run time"),
    (Case("gather_nd_batch_dims", [N("GatherND", ["x", "k"], batch_dims=1)], {"x": X3},
          {"k": i64([1], [0])}), "batch_dims"),
    (Case("pad_unknown_mode", [N("Pad", ["x", "p"], mode="mirror")], {"x": X2},
          {"p": i64(0, 1, 0, 1)}), "mode 'mirror'"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "message"), _REFUSED, ids=[c.id for c, _ in _REFUSED])
def test_unsupported_uses_are_refused(case: Case, message: str, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOpsError, match=message):
        import_case(case, tmp_path)


_MALFORMED = [
    Case("split_wrong_sizes", [_multi("Split", ["x", "s"], ["a", "b"]), N("Add", ["a", "b"])],
         {"x": X2}, {"s": i64(1, 2)}),
    Case("pad_wrong_length", [N("Pad", ["x", "p"])], {"x": X2}, {"p": i64(1, 1, 1)}),
    Case("gather_elements_out_of_range", [N("GatherElements", ["x", "k"])], {"x": X2},
         {"k": np.full((1, 6), 4, np.int64)}),
    Case("constant_of_shape_negative", [N("ConstantOfShape", ["s"])], {"x": X2}, {"s": i64(-1)}),
]  # fmt: skip


@pytest.mark.parametrize("case", _MALFORMED, ids=lambda c: c.id)
def test_malformed_uses_are_corrupt_files(case: Case, tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError):
        import_case(case, tmp_path)
