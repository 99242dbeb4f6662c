"""The protobuf encoder: hand-computed bytes, and byte equality with the onnx package."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from engine.io.export import _proto
from engine.io.export._tensors import FLOAT, INT64


def test_varints_by_hand() -> None:
    assert _proto.varint(0) == b"\x00"
    assert _proto.varint(1) == b"\x01"
    assert _proto.varint(300) == b"\xac\x02"  # 300 = 0b10_0101100 -> 0xAC 0x02
    assert _proto.varint(-1) == b"\xff" * 9 + b"\x01"  # 64-bit two's complement, 10 bytes


def test_attribute_bytes_by_hand() -> None:
    # field 1 (name, wire 2) = 0x0A, len 4, "axis"; field 3 (i, wire 0) = 0x18, 1;
    # field 20 (type, wire 0) = varint(160) = 0xA0 0x01, INT = 2
    assert _proto.attribute_int("axis", 1) == b"\n\x04axis\x18\x01\xa0\x01\x02"
    # INTS: one key 0x40 (field 8, wire 0) per element, unpacked (proto2); type INTS = 7
    assert _proto.attribute("p", [2, 3]) == b"\n\x01p@\x02@\x03\xa0\x01\x07"
    # FLOAT: field 2, wire 5 (0x15), 1.0 little-endian; type FLOAT = 1
    assert _proto.attribute("a", 1.0) == b"\n\x01a\x15\x00\x00\x80?\xa0\x01\x01"


def test_tensor_bytes_by_hand() -> None:
    # dims 2 (0x08 0x02), data_type INT64 = 7 (0x10 0x07), name "t" (0x42 ...), raw (0x4A ...)
    raw = (5).to_bytes(8, "little") + (6).to_bytes(8, "little")
    assert _proto.tensor("t", INT64, [2], raw) == b"\x08\x02\x10\x07B\x01tJ\x10" + raw


def test_messages_match_the_onnx_package_byte_for_byte() -> None:
    # helper.make_node writes attributes sorted by name: pass ours in that order too
    raw = np.array([1.0, -2.0, 0.5, 4.0], dtype="<f4").tobytes()
    ours = _proto.model(
        _proto.graph(
            "g",
            [
                _proto.node(
                    "Gemm",
                    ["x", "w"],
                    ["y"],
                    name="fc",
                    attributes=[_proto.attribute("alpha", 0.5), _proto.attribute_int("transB", 1)],
                )
            ],
            [_proto.tensor("w", FLOAT, [2, 2], raw)],
            [_proto.value_info("x", FLOAT, [1, 2])],
            [_proto.value_info("y", FLOAT, [1, 2])],
        ),
        ir_version=10,
        opset=21,
    )
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], raw, raw=True)
    theirs = helper.make_model(
        helper.make_graph(
            [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1, alpha=0.5)],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
            initializer=[w],
        ),
        opset_imports=[helper.make_opsetid("", 21)],
        ir_version=10,
        producer_name="mpq",
    )
    assert ours == theirs.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(ours), full_check=True)


def test_symbolic_dims_match_the_onnx_package_byte_for_byte() -> None:
    ours = _proto.value_info("x", FLOAT, ["batch", 3, "5*batch"])
    theirs = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "5*batch"])
    assert ours == theirs.SerializeToString()
