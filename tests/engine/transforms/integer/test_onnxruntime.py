"""Cross-check with a peer implementation: the same integer conv, depthwise conv and linear
built as ONNX QLinearConv / QLinearMatMul and run by onnxruntime.

onnxruntime requantizes an int32 accumulator by multiplying it with the float32
``s_x s_w / s_y`` and rounding half to even; MPQ multiplies by the dyadic
``m 2^-k`` and rounds half up (:mod:`engine.transforms.integer._dyadic`). The two agree
except where ``acc * M`` falls on (or within float32 error of) a half step:
there they differ by one step, and nowhere by more.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.transforms.integer import QSpec, QTensor, dyadic, requantize
from engine.transforms.integer._kernels import conv_acc, linear_acc

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _run(
    node: object, inputs: dict[str, np.ndarray], inits: list[object], out_shape: list[int]
) -> np.ndarray:
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(k, TensorProto.UINT8, list(v.shape))
            for k, v in inputs.items()
        ],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(["y"], inputs)[0]


def _compare(mpq: torch.Tensor, peer: np.ndarray) -> None:
    diff = np.abs(mpq.numpy().astype(np.int64) - peer.astype(np.int64))
    assert diff.max() <= 1, f"{diff.max()} steps apart"
    assert (diff == 0).mean() >= 0.99, f"only {(diff == 0).mean():.4f} identical"


X = QSpec(0.021, 41, 0, 255)
W_RANGE = (-64, 64)
"""7-bit weight codes. On CPUs without VNNI, onnxruntime's uint8 x int8 kernels add pairs of
products in int16 (AVX2 ``vpmaddubsw``), which saturates once a pair passes 32,767: with
full-range int8 weights its QLinearConv was 77 steps off and QLinearMatMul 5 on an
AVX2-only AMD EPYC (within one step on a VNNI CPU). Its documented remedy on such CPUs is
this reduced range."""
Y = QSpec(0.047, 97, 0, 255)


@pytest.mark.parametrize("groups", [1, 16], ids=["conv", "depthwise"])
def test_qlinearconv_matches(groups: int) -> None:
    gen = torch.Generator().manual_seed(groups)
    x = torch.randint(0, 256, (2, 16, 12, 12), generator=gen)
    w_i = torch.randint(*W_RANGE, (16, 16 // groups, 3, 3), generator=gen)
    s_w = (torch.rand(16, generator=gen) / 200 + 1e-4).float()
    bias_i = torch.randint(-3000, 3000, (16,), generator=gen)
    inits = [
        numpy_helper.from_array(np.array(X.scale, np.float32), "xs"),
        numpy_helper.from_array(np.array(X.zero_point, np.uint8), "xz"),
        numpy_helper.from_array(w_i.numpy().astype(np.int8), "w"),
        numpy_helper.from_array(s_w.numpy(), "ws"),
        numpy_helper.from_array(np.zeros(16, np.int8), "wz"),
        numpy_helper.from_array(np.array(Y.scale, np.float32), "ys"),
        numpy_helper.from_array(np.array(Y.zero_point, np.uint8), "yz"),
        numpy_helper.from_array(bias_i.numpy().astype(np.int32), "b"),
    ]
    node = helper.make_node(
        "QLinearConv",
        ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
        ["y"],
        group=groups,
        pads=[1, 1, 1, 1],
        strides=[1, 1],
    )
    peer = _run(node, {"x": x.numpy().astype(np.uint8)}, inits, [2, 16, 12, 12])
    acc = conv_acc(
        QTensor(x, X), w_i, stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=groups
    )
    acc = acc + bias_i.reshape(1, -1, 1, 1)
    mult = X.scale * s_w.double() / Y.scale
    mpq = requantize(acc, dyadic(mult), Y, axis=1)
    _compare(mpq, peer)


def test_qlinearmatmul_matches() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (64, 384), generator=gen)
    w_i = torch.randint(*W_RANGE, (96, 384), generator=gen)  # [out, in], as MPQ stores it
    s_w = 0.0009
    inits = [
        numpy_helper.from_array(np.array(X.scale, np.float32), "xs"),
        numpy_helper.from_array(np.array(X.zero_point, np.uint8), "xz"),
        numpy_helper.from_array(w_i.T.contiguous().numpy().astype(np.int8), "w"),
        numpy_helper.from_array(np.array(s_w, np.float32), "ws"),
        numpy_helper.from_array(np.array(0, np.int8), "wz"),
        numpy_helper.from_array(np.array(Y.scale * 8, np.float32), "ys"),
        numpy_helper.from_array(np.array(Y.zero_point, np.uint8), "yz"),
    ]
    node = helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])
    peer = _run(node, {"x": x.numpy().astype(np.uint8)}, inits, [64, 96])
    out = QSpec(float(np.float32(Y.scale * 8)), Y.zero_point, 0, 255)
    acc = linear_acc(QTensor(x, X), w_i)
    mult = float(np.float32(X.scale)) * float(np.float32(s_w)) / out.scale
    mpq = requantize(acc, dyadic(mult), out)
    _compare(mpq, peer)
