"""The ONNX math, logic, activation, reduction, normalisation and einsum ops real exports add,
against onnxruntime op by op, and their refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.errors import CorruptFileError, UnsupportedOpsError
from tests.engine.io.importers.onnx.test_import import Case, N, _ops
from tests.engine.io.importers.onnx.test_ops_more import check_case, f32, i64, import_case, only

X4, X3, X2 = f32(2, 3, 8, 8), f32(2, 3, 10), f32(4, 6)
B2 = f32(4, 6) > 0
HALVES = np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5], [0.2, -0.7, 3.49, 0, 7, -0.1]], np.float32)
SPECIALS = np.array([np.nan, 1.0, np.inf, -np.inf], np.float32)
TIES = np.array([[3, 1, 3, 0], [2, 2, 1, 2]], np.int64)

MATH = [
    *(Case(op.lower(), [N(op, ["x"])], {"x": X4})
      for op in ("Exp", "Abs", "Sin", "Cos", "Floor", "Ceil", "Sign", "Softplus", "Softsign")),
    Case("log", [N("Log", ["x"])], {"x": np.abs(X4) + 0.1}),
    Case("reciprocal", [N("Reciprocal", ["x"])], {"x": np.abs(X4) + 0.1}),
    Case("round_half_to_even", [N("Round", ["x"])], {"x": HALVES}),
    Case("mish_opset18", [N("Mish", ["x"])], {"x": X4}, opset=18),
    Case("isnan", [N("IsNaN", ["x"])], {"x": SPECIALS}),
    *(Case(f"isinf_{p}{n}", [N("IsInf", ["x"], detect_positive=p, detect_negative=n)],
           {"x": SPECIALS}) for p, n in ((1, 1), (1, 0), (0, 1), (0, 0))),
    Case("not", [N("Not", ["m"])], {"m": B2}),
    *(Case(op.lower(), [N(op, ["m", "k"])], {"m": B2, "k": ~B2[::-1].copy()})
      for op in ("And", "Or", "Xor")),
    Case("less", [N("Less", ["x", "z"])], {"x": X2, "z": f32(6)}),
    Case("greater_const_left", [N("Greater", ["c", "x"])], {"x": X2},
         {"c": np.array(0.3, np.float32)}, check=only("lt")),
    Case("less_or_equal_int", [N("LessOrEqual", ["i", "c"])], {"i": TIES}, {"c": i64(2)}),
    Case("greater_or_equal", [N("GreaterOrEqual", ["x", "z"])], {"x": X2, "z": X2[::-1].copy()}),
    Case("greater_or_equal_const_left", [N("GreaterOrEqual", ["c", "i"])], {"i": TIES},
         {"c": i64(2)}),
    Case("max_variadic", [N("Max", ["x", "z", "w"])], {"x": X2, "z": f32(6), "w": f32(4, 1)}),
    Case("max_scalar", [N("Max", ["x", "c"])], {"x": X2}, {"c": np.array(0.0, np.float32)},
         check=only("clamp_min")),
    Case("min_scalar_first", [N("Min", ["c", "x"])], {"x": X2}, {"c": np.array([0.2], np.float32)}),
    Case("min_single", [N("Min", ["x"])], {"x": X2}),
    Case("sum_variadic", [N("Sum", ["x", "z", "x"])], {"x": X2, "z": f32(6)}),
    Case("mean_variadic", [N("Mean", ["x", "z", "w"])], {"x": X2, "z": f32(6), "w": f32(4, 6)}),
    Case("mod_int", [N("Mod", ["i", "d"])], {"i": TIES - 2, "d": i64(3, -2, 2, -3)}),
    Case("mod_int_fmod_scalar", [N("Mod", ["i", "d"], fmod=1)], {"i": TIES - 2}, {"d": i64(-2)}),
    Case("mod_float_fmod", [N("Mod", ["x", "z"], fmod=1)], {"x": X2 * 5, "z": np.abs(f32(6)) + 1}),
    Case("cast_like", [N("CastLike", ["i", "x"])], {"i": TIES, "x": f32(1)}),
    Case("log_softmax", [N("LogSoftmax", ["x"], axis=1)], {"x": X4}),
    Case("log_softmax_opset11", [N("LogSoftmax", ["x"], axis=1)], {"x": X3}, opset=11),
]  # fmt: skip
ACTIVATIONS = [
    Case("leaky_relu", [N("LeakyRelu", ["x"], alpha=0.2)], {"x": X4}),
    Case("elu", [N("Elu", ["x"], alpha=0.5)], {"x": X4}),
    Case("celu", [N("Celu", ["x"], alpha=2.0)], {"x": X4}, opset=12),
    Case("selu", [N("Selu", ["x"])], {"x": X4}, check=only("selu")),
    Case("selu_custom", [N("Selu", ["x"], alpha=1.5, gamma=2.0)], {"x": X4}),
    Case("prelu_channel", [N("PRelu", ["x", "s"])], {"x": X4}, {"s": f32(3, 1, 1)},
         check=only("prelu")),
    Case("prelu_single", [N("PRelu", ["x", "s"])], {"x": X4}, {"s": f32(1)}),
    Case("prelu_last_axis", [N("PRelu", ["x", "s"])], {"x": X4}, {"s": f32(8)},
         check=lambda ir: "prelu" not in _ops(ir)),
    Case("gelu_opset20", [N("Gelu", ["x"])], {"x": X4}, opset=20),
    Case("gelu_tanh_opset20", [N("Gelu", ["x"], approximate="tanh")], {"x": X4}, opset=20),
    Case("thresholded_relu", [N("ThresholdedRelu", ["x"], alpha=0.5)], {"x": X4}),
]  # fmt: skip
REDUCE = [
    Case("reduce_max_input", [N("ReduceMax", ["x", "a"], keepdims=0)], {"x": X4},
         {"a": i64(1, -1)}, opset=18, check=only("amax")),
    Case("reduce_min_attr", [N("ReduceMin", ["x"], axes=[2])], {"x": X4}, opset=13),
    Case("reduce_max_all", [N("ReduceMax", ["x"])], {"x": X4}),
    Case("reduce_prod", [N("ReduceProd", ["x"], axes=[1, 3], keepdims=0)], {"x": X4}),
    Case("reduce_l1", [N("ReduceL1", ["x"], axes=[-1])], {"x": X4}),
    Case("reduce_l2", [N("ReduceL2", ["x", "a"], keepdims=0)], {"x": X4}, {"a": i64(1)}, opset=18),
    Case("reduce_sum_square", [N("ReduceSumSquare", ["x"], axes=[2, 3])], {"x": X4}),
    Case("reduce_log_sum", [N("ReduceLogSum", ["x"], axes=[1])], {"x": np.abs(X4)}),
    Case("reduce_log_sum_exp", [N("ReduceLogSumExp", ["x"], axes=[1], keepdims=0)], {"x": X4}),
    Case("reduce_max_noop", [N("ReduceMax", ["x"], noop_with_empty_axes=1)], {"x": X4}, opset=18),
    Case("argmax", [N("ArgMax", ["x"], axis=1)], {"x": X4}),
    Case("argmin_last_index", [N("ArgMin", ["i"], axis=1, keepdims=0, select_last_index=1)],
         {"i": TIES}),
    Case("argmax_first_index", [N("ArgMax", ["i"], axis=-1, keepdims=0)], {"i": TIES}),
    Case("global_max_pool", [N("GlobalMaxPool", ["x"])], {"x": X4}),
]  # fmt: skip
NORM = [
    Case("instance_norm", [N("InstanceNormalization", ["x", "g", "b"], epsilon=1e-3)], {"x": X4},
         {"g": f32(3), "b": f32(3)}, check=only("group_norm")),
    Case("group_norm_opset18_per_group", [N("GroupNormalization", ["x", "g", "b"], num_groups=2)],
         {"x": f32(2, 4, 3, 3)}, {"g": f32(2), "b": f32(2)}, opset=18),
    Case("group_norm_opset21", [N("GroupNormalization", ["x", "g", "b"], num_groups=2)],
         {"x": f32(2, 4, 5)}, {"g": f32(4), "b": f32(4)}, opset=21),
]  # fmt: skip
EINSUM = [
    Case("einsum_attention_scores", [N("Einsum", ["q", "k"], equation="bhqd,bhkd->bhqk")],
         {"q": f32(2, 2, 3, 4), "k": f32(2, 2, 5, 4)}, check=only("permute", "matmul")),
    Case("einsum_attention_values", [N("Einsum", ["p", "v"], equation="bhqk,bhkd->bqhd")],
         {"p": f32(2, 2, 3, 5), "v": f32(2, 2, 5, 4)}),
    Case("einsum_weight_is_linear", [N("Einsum", ["x", "W"], equation="bsd,df->bsf")], {"x": X3},
         {"W": f32(10, 7)}, check=only("linear")),
    Case("einsum_weight_first", [N("Einsum", ["W", "x"], equation="hd,bsd->bhs")], {"x": X3},
         {"W": f32(5, 10)}),
    Case("einsum_transpose", [N("Einsum", ["x"], equation="ij->ji")], {"x": X2}),
    Case("einsum_sum", [N("Einsum", ["x"], equation="ijk->i")], {"x": X3}),
    Case("einsum_outer", [N("Einsum", ["a", "b"], equation="i,j->ij")], {"a": f32(3), "b": f32(4)}),
    Case("einsum_ellipsis", [N("Einsum", ["a", "b"], equation="...ij,...jk->...ik")],
         {"a": f32(2, 3, 4, 5), "b": f32(2, 3, 5, 2)}),
    Case("einsum_implicit", [N("Einsum", ["a", "b"], equation="ij,jk")],
         {"a": f32(3, 4), "b": f32(4, 5)}),
    Case("einsum_three_operands", [N("Einsum", ["a", "b", "c"], equation="ij,jk,kl->li")],
         {"a": f32(3, 4), "b": f32(4, 5), "c": f32(5, 2)}),
    Case("einsum_summed_free_index", [N("Einsum", ["a", "b"], equation="bij,bjk->bk")],
         {"a": f32(2, 3, 4), "b": f32(2, 4, 5)}),
]  # fmt: skip
CASES = [*MATH, *ACTIVATIONS, *REDUCE, *NORM, *EINSUM]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_op_matches_onnxruntime(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)


_REFUSED = [
    (Case("einsum_diagonal", [N("Einsum", ["x"], equation="ii->i")], {"x": f32(3, 3)}),
     "repeats an index"),
    (Case("einsum_broadcast_index", [N("Einsum", ["a", "b"], equation="ij,jk->ik")],
          {"a": f32(3, 1), "b": f32(4, 5)}), "broadcasts index"),
    (Case("group_norm_runtime_per_group_scale",
          [N("GroupNormalization", ["x", "g", "b"], num_groups=2)],
          {"x": f32(2, 4, 3), "g": f32(2)}, {"b": f32(2)}, opset=18), "constant"),
    (Case("reduce_l2_int", [N("ReduceL2", ["i"], axes=[1])], {"i": TIES}), "needs floats"),
    (Case("gelu_unknown_approximation", [N("Gelu", ["x"], approximate="erf")], {"x": X2},
          opset=20), "approximate"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "message"), _REFUSED, ids=[c.id for c, _ in _REFUSED])
def test_unsupported_uses_are_refused(case: Case, message: str, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOpsError, match=message):
        import_case(case, tmp_path)


def test_float_mod_without_fmod_is_a_corrupt_file(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match="fmod=0"):
        import_case(Case("mod_float_fmod0", [N("Mod", ["x", "x"])], {"x": X2}), tmp_path)


@pytest.mark.parametrize("equation", ["\u0101j,jk->\u0101k", "...ij,...jk->...i\u0100"])
def test_einsum_labels_must_be_ascii_letters(equation: str, tmp_path: Path) -> None:
    """Other letters could pass for the importer's internal stand-ins of ``...``."""
    case = Case("einsum_non_ascii", [N("Einsum", ["a", "b"], equation=equation)],
                {"a": f32(2, 3, 4), "b": f32(2, 4, 5)})  # fmt: skip
    with pytest.raises(CorruptFileError, match="labels other than"):
        import_case(case, tmp_path)
