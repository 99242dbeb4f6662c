"""The stdlib/numpy ONNX decoder against the real ``onnx`` package as the reference."""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from engine.errors import (
    ArchiveLimitError,
    CorruptFileError,
    ModelFormatError,
    OnnxExternalDataError,
)
from engine.io.importers.onnx import _proto as decoder_module
from engine.io.importers.onnx import _types as types_module
from engine.io.importers.onnx._proto import decode_model
from engine.io.importers.onnx._types import (
    AttributeType,
    OnnxAttribute,
    OnnxGraph,
    OnnxModel,
    OnnxTensor,
    OnnxValueInfo,
)


def _ref_array(t: onnx.TensorProto) -> np.ndarray:
    ref = nh.to_array(t)
    return ref.astype(np.float32) if t.data_type == T.BFLOAT16 else ref


def _check_tensor(ours: OnnxTensor, ref: onnx.TensorProto) -> None:
    assert (ours.name, ours.dims, ours.data_type) == (ref.name, tuple(ref.dims), ref.data_type)
    assert ours.raw_data == (ref.raw_data if ref.HasField("raw_data") else None)
    for name in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        arr = getattr(ours, name)
        assert arr.tobytes() == np.array(getattr(ref, name), arr.dtype).tobytes(), name
    got, want = ours.to_numpy(), _ref_array(ref)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()  # bit-exact, NaN payloads and -0.0 included


def _check_value_info(ours: OnnxValueInfo, ref: onnx.ValueInfoProto) -> None:
    tt = ref.type.tensor_type
    shape = None
    if tt.HasField("shape"):
        kinds = [d.WhichOneof("value") for d in tt.shape.dim]
        shape = tuple(
            getattr(d, k) if k else None for d, k in zip(tt.shape.dim, kinds, strict=True)
        )
    assert (ours.name, ours.elem_type, ours.shape) == (ref.name, tt.elem_type, shape)


def _check_attribute(attr: OnnxAttribute, ref: onnx.AttributeProto) -> None:
    assert (attr.name, int(attr.type)) == (ref.name, int(ref.type))
    want = h.get_attribute_value(ref)
    single = ref.type in (ref.TENSOR, ref.GRAPH)
    if ref.type in (ref.TENSOR, ref.GRAPH, ref.TENSORS, ref.GRAPHS):
        values, wants = ((attr.value,), [want]) if single else (attr.value, want)
        assert isinstance(values, tuple) and len(values) == len(wants)
        for value, w in zip(values, wants, strict=True):
            if isinstance(value, OnnxTensor):
                _check_tensor(value, w)
            else:
                assert isinstance(value, OnnxGraph)
                _check_graph(value, w)
    else:
        assert attr.value == (want if ref.type <= ref.STRING else tuple(want))


def _check_graph(ours: OnnxGraph, ref: onnx.GraphProto) -> None:
    assert ours.name == ref.name and len(ours.nodes) == len(ref.node)
    for node, rn in zip(ours.nodes, ref.node, strict=True):
        assert (node.name, node.op_type, node.domain) == (rn.name, rn.op_type, rn.domain)
        assert (node.inputs, node.outputs) == (tuple(rn.input), tuple(rn.output))
        assert list(node.attributes) == [a.name for a in rn.attribute]
        for ra in rn.attribute:
            _check_attribute(node.attributes[ra.name], ra)
    for t, rt in zip(ours.initializers, ref.initializer, strict=True):
        _check_tensor(t, rt)
    for mine, theirs in ((ours.inputs, ref.input), (ours.outputs, ref.output)):
        assert len(mine) == len(theirs)
        for vi, rvi in zip(mine, theirs, strict=True):
            _check_value_info(vi, rvi)
    for vi, rvi in zip(ours.value_info, ref.value_info, strict=True):
        _check_value_info(vi, rvi)


def _check_model(data: bytes) -> OnnxModel:
    ref = onnx.ModelProto.FromString(data)
    ours = decode_model(data)
    assert (ours.ir_version, ours.producer_name) == (ref.ir_version, ref.producer_name)
    assert ours.opset == {o.domain: o.version for o in ref.opset_import}
    _check_graph(ours.graph, ref.graph)
    return ours


def _vi(name: str, shape: list[int | str | None] | None) -> onnx.ValueInfoProto:
    return h.make_tensor_value_info(name, T.FLOAT, shape)


def _cnn_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        nh.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        h.make_tensor("b", T.FLOAT, [4], [0.5, -1.0, 0.0, 2.0]),  # typed float_data
        nh.from_array(rng.standard_normal((10, 4 * 6 * 6)).astype(np.float32), "fc_w"),
        nh.from_array(np.array([1, -1], np.int64), "shape"),
    ]
    nodes = [
        h.make_node("Conv", ["x", "w", "b"], ["c"], "conv", kernel_shape=[3, 3], pads=[0] * 4),
        h.make_node("Relu", ["c"], ["r"], "relu"),
        h.make_node("Reshape", ["r", "shape"], ["f"], "flat"),
        h.make_node("Gemm", ["f", "fc_w", ""], ["y"], "fc", alpha=1.0, transB=1),
    ]
    vis = [_vi("c", ["N", 4, 6, 6]), _vi("f", None)]
    graph = h.make_graph(
        nodes, "cnn", [_vi("x", ["N", 3, 8, None])], [_vi("y", ["N", 10])], inits, value_info=vis
    )
    return h.make_model(graph, producer_name="tests", opset_imports=[h.make_opsetid("", 17)])


def test_conv_gemm_relu_model_matches_onnx() -> None:
    data = _cnn_model().SerializeToString()
    model = _check_model(data)
    assert model == decode_model(data)  # value equality, numpy-backed tensors included
    assert model.graph.inputs[0].shape == ("N", 3, 8, None)
    assert model.graph.nodes[3].inputs == ("f", "fc_w", "")


def _every_attribute_model() -> onnx.ModelProto:
    relu = h.make_graph([h.make_node("Relu", ["a"], ["o"])], "then", [], [_vi("o", None)])
    neg = h.make_graph([h.make_node("Neg", ["a"], ["o"])], "else", [], [_vi("o", [2])])
    inner_if = h.make_node("If", ["cond"], ["o"], then_branch=relu, else_branch=neg)
    outer = h.make_graph([inner_if], "outer", [], [_vi("o", None)])
    t16 = h.make_tensor("h", T.FLOAT16, [2], np.array([1.5, -2.0], np.float16))
    attrs: dict[str, Any] = {
        "f": -0.1,
        "i": -(2**62),
        "s": "héllo",
        "t": t16,
        "g": outer,
        "fs": [1.0, -2.5, 1e30],
        "is": [-1, 0, 2**63 - 1],
        "ss": [b"\x00\xff", b""],
        "ts": [t16, nh.from_array(np.arange(6, dtype=np.int64).reshape(2, 3), "k")],
        "gs": [relu, neg],
    }
    node = h.make_node("If", ["cond"], ["o"], "if0", domain="custom", **attrs)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("cond", T.BOOL, [])], [])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("x", 1)])


def test_attributes_of_every_kind_including_nested_subgraphs() -> None:
    data = _every_attribute_model().SerializeToString()
    ours = _check_model(data)
    assert ours == decode_model(data) and ours != decode_model(
        data.replace(b"\x00\xff", b"\x00\xfe")
    )
    got = ours.graph.nodes[0].attributes
    assert sorted(a.type for a in got.values()) == list(AttributeType)
    assert got["s"].value == "héllo".encode() and got["f"].value == np.float32(-0.1)
    assert ours.graph.inputs[0].shape == ()


_VALUES: dict[int, list[float | int | bool]] = {
    T.FLOAT: [0.0, -0.0, 1.5, float("inf"), float("nan"), -3.4e38],
    T.FLOAT16: [0.0, -0.0, 1.5, 65504.0, float("-inf"), float("nan")],
    T.BFLOAT16: [0.0, -0.0, 1.5, 3.0e38, float("-inf"), -2.0],
    T.DOUBLE: [0.0, -0.0, 1e-300, float("inf"), float("nan"), -1e308],
    T.INT8: [-128, -1, 0, 1, 100, 127],
    T.UINT8: [0, 1, 2, 128, 254, 255],
    T.INT16: [-32768, -1, 0, 1, 1000, 32767],
    T.UINT16: [0, 1, 2, 32768, 65534, 65535],
    T.INT32: [-(2**31), -1, 0, 1, 2**20, 2**31 - 1],
    T.INT64: [-(2**63), -1, 0, 1, 2**40, 2**63 - 1],
    T.UINT32: [0, 1, 2, 2**31, 2**32 - 2, 2**32 - 1],
    T.UINT64: [0, 1, 2, 2**63, 2**64 - 2, 2**64 - 1],
    T.BOOL: [True, False, True, True, False, False],
}


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "typed"])
@pytest.mark.parametrize("data_type", list(_VALUES), ids=lambda t: T.DataType.Name(t))
def test_initializer_dtypes_match_onnx(data_type: int, raw: bool) -> None:
    values = np.array(_VALUES[data_type], h.tensor_dtype_to_np_dtype(data_type)).reshape(2, 3)
    arrays = {"v": values, "empty": values[:0], "scalar": values.reshape(-1)[:1].reshape(())}
    if raw:
        tensors = [nh.from_array(array, name) for name, array in arrays.items()]
    else:
        tensors = [h.make_tensor(k, data_type, a.shape, a.reshape(-1)) for k, a in arrays.items()]
    assert all(t.HasField("raw_data") == raw for t in tensors)
    graph = h.make_graph([], "g", [], [], tensors)
    ours = _check_model(h.make_model(graph).SerializeToString())
    assert [t.to_numpy().shape for t in ours.graph.initializers] == [(2, 3), (0, 3), ()]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_exported_cnn_matches_onnx(tmp_path: Path) -> None:
    torch.manual_seed(0)
    nn = torch.nn
    features = [nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2)]
    head = [nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)]
    net = nn.Sequential(*features, *head)
    path = tmp_path / "cnn.onnx"
    args = (torch.randn(2, 3, 16, 16),)
    axes = {"x": {0: "batch"}}
    torch.onnx.export(net.eval(), args, path, dynamo=False, input_names=["x"], dynamic_axes=axes)
    model = _check_model(path.read_bytes())
    assert model.producer_name == "pytorch" and model.graph.inputs[0].shape == ("batch", 3, 16, 16)
    assert [n.op_type for n in model.graph.nodes][:2] == ["Conv", "Relu"]  # BN folded into Conv
    assert len(model.graph.initializers) == 6


# --- hand-written wire format, for encodings onnx never emits and for hostile input ---


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not v:
            return bytes(out)


def _ld(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _vf(num: int, value: int) -> bytes:
    return _varint(num << 3) + _varint(value)


def test_packed_unpacked_and_split_messages_match_onnx() -> None:
    # dims unpacked, int64_data half packed / half unpacked, int32_data packed with a
    # sign-extended negative; the graph field split in two pieces that protobuf merges.
    tensor = _ld(1, _varint(2) + _varint(3)) + _vf(2, T.INT32) + _ld(8, b"w")
    tensor += _ld(5, b"".join(_varint(v) for v in [-5, 0, 7, 2**31 - 1, -(2**31), 1]))
    ints = _ld(8, _varint(-1) + _varint(300)) + _vf(8, 5)  # AttributeProto.ints, packed + not
    floats = _ld(7, np.array([1.5, -2.0], "<f4").tobytes())  # AttributeProto.floats, packed
    attr = _ld(1, b"k") + ints + floats + _vf(20, AttributeType.INTS)
    node = _ld(4, b"Foo") + _ld(5, attr)
    piece1 = _ld(1, node) + _ld(2, b"first")
    piece2 = _ld(5, tensor) + _ld(2, b"second") + _ld(99, b"unknown field") + _vf(98, 7)
    data = _vf(1, 9) + _ld(7, piece1) + _ld(8, _vf(2, 17)) + _ld(7, piece2)
    ours = _check_model(data)
    assert ours.graph.name == "second" and ours.graph.nodes[0].attributes["k"].value == (-1, 300, 5)
    assert ours.graph.initializers[0].to_numpy().tolist() == [[-5, 0, 7], [2**31 - 1, -(2**31), 1]]


def test_large_packed_varints_cross_chunk_boundaries() -> None:
    values = np.random.default_rng(1).integers(-(2**63), 2**63 - 1, 400_000, dtype=np.int64)
    values[::7] = np.arange(len(values[::7]))  # mix 1-byte and 10-byte varints
    graph = h.make_graph([], "g", [], [], [h.make_tensor("big", T.INT64, [len(values)], values)])
    got = decode_model(h.make_model(graph).SerializeToString()).graph.initializers[0]
    assert np.array_equal(got.to_numpy(), values)


def _sample() -> bytes:
    model = _every_attribute_model()
    model.graph.initializer.extend(_cnn_model().graph.initializer[1:2])
    model.graph.initializer.append(h.make_tensor("i", T.INT64, [3], [-1, 2**40, 7]))
    model.graph.initializer.append(h.make_tensor("r", T.INT8, [2], b"\x01\xff", raw=True))
    return bytes(model.SerializeToString())


def _decode_all(data: bytes) -> None:
    """Decode and convert every tensor; only MPQ errors may escape."""
    model = decode_model(data)
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        for t in graph.initializers:
            t.to_numpy()
        for node in graph.nodes:
            stack += [a.value for a in node.attributes.values() if isinstance(a.value, OnnxGraph)]


def test_truncated_files_raise_corrupt_file_error() -> None:
    data = _sample()
    raised = 0
    for cut in range(len(data)):
        try:
            onnx.ModelProto.FromString(data[:cut])
            reference_ok = True
        except Exception:
            reference_ok = False
        try:
            _decode_all(data[:cut])
        except CorruptFileError as exc:
            assert "byte" in str(exc) or "no graph" in str(exc)
            raised += 1
        else:
            assert reference_ok, f"cut at {cut} decoded, but protobuf rejects it"
    assert raised >= len(data) - 5


def test_random_bytes_raise_corrupt_file_error() -> None:
    rng = random.Random(1234)
    for _ in range(1000):
        with pytest.raises(CorruptFileError):
            decode_model(rng.randbytes(rng.randrange(0, 400)))


def test_mutated_models_raise_only_mpq_errors() -> None:
    rng, data = random.Random(4321), _sample()
    corrupt = 0
    for _ in range(1000):
        mutated = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            _decode_all(bytes(mutated))
        except CorruptFileError:
            corrupt += 1
        except (ModelFormatError, OnnxExternalDataError):  # a mutated type or data_location
            pass
    assert corrupt > 500


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_ld(7, b"")[:-1] + _varint(1000) + b"\x0a\x00", "runs past the end"),
        (b"\x3a" + _varint(2**63) + b"\x00", "runs past the end"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (b"\x08" + b"\xff" * 9 + b"\x7f", "overflows 64 bits"),
        (b"\x08\xff\xff", "truncated varint"),
        (b"\x0b", "invalid field key"),  # wire type 3: groups are not ONNX
        (b"\x00\x00", "invalid field key"),  # field number 0
        (_ld(1, b"x"), "wire type 2"),  # ir_version must be a varint
        (_ld(7, _ld(2, b"\xff\xfe")), "invalid UTF-8"),
        (_ld(7, _ld(5, _ld(1, b"\xff" * 10 + b"\x01"))), "overflow 64 bits"),  # packed dims
        (_ld(7, _ld(5, _ld(1, b"\x01\xff"))), "unterminated varint"),
        (_ld(7, _ld(5, _ld(4, b"\x00" * 6))), "partial value"),  # packed floats
        (_ld(7, _ld(5, _ld(1, b"\x01" * 65))), "has 65 dims"),
        (_ld(8, b"") * 2 + _ld(8, _vf(2, 3)) + _ld(7, b""), "imported twice"),
        (_ld(7, _ld(1, _ld(5, _ld(1, b"a") + _vf(20, 2)) * 2)), "repeated"),
        (_ld(7, _ld(1, _ld(5, _ld(1, b"a")))), "type 0"),
        (_vf(1, 7), "no graph"),
        (b"", "no graph"),
    ],
)
def test_malformed_wire_data_is_rejected_with_a_location(data: bytes, message: str) -> None:
    with pytest.raises(CorruptFileError, match=message):
        decode_model(data)


def _nested_if(levels: int) -> bytes:
    graph = b""
    for _ in range(levels):
        attr = _ld(1, b"then_branch") + _vf(20, AttributeType.GRAPH) + _ld(6, graph)
        graph = _ld(1, _ld(4, b"If") + _ld(5, attr))
    return _ld(7, graph)


def test_nesting_is_capped_without_recursion_error() -> None:
    assert _check_model(_nested_if(20)).graph.nodes[0].op_type == "If"
    with pytest.raises(CorruptFileError, match="nested"):
        decode_model(_nested_if(5000))
    with pytest.raises(CorruptFileError, match="nested"):
        decode_model(_nested_if(5), max_depth=10)


def test_size_limit() -> None:
    data = _cnn_model().SerializeToString()
    with pytest.raises(ArchiveLimitError):
        decode_model(data, max_bytes=len(data) - 1)
    assert decode_model(data, max_bytes=len(data)).graph.name == "cnn"


def test_external_data_needs_a_loader() -> None:
    values = np.arange(12, dtype=np.float32)
    tensor = nh.from_array(values, "w")
    onnx.external_data_helper.set_external_data(tensor, "w.bin", offset=64, length=48)
    tensor.data_location = T.EXTERNAL
    tensor.ClearField("raw_data")
    data = h.make_model(h.make_graph([], "g", [], [], [tensor])).SerializeToString()
    ours = decode_model(data).graph.initializers[0]
    assert ours.external_data == {"location": "w.bin", "offset": "64", "length": "48"}
    with pytest.raises(OnnxExternalDataError, match=r"w\.bin"):
        ours.to_numpy()
    seen: list[dict[str, str]] = []

    def loader(entries: dict[str, str]) -> bytes:
        seen.append(entries)
        return values.tobytes()

    got = ours.to_numpy(loader)
    assert np.array_equal(got, values) and seen == [ours.external_data]
    with pytest.raises(CorruptFileError, match="40 bytes"):
        ours.to_numpy(lambda entries: b"\x00" * 40)


_BAD_TENSORS = [
    (T(name="a", data_type=T.FLOAT, dims=[2, 3], raw_data=b"\0" * 20), "holds 20 bytes"),
    (T(name="b", data_type=T.INT8, dims=[2], int32_data=[1, 2, 3]), "holds 3 int32_data"),
    (T(name="c", data_type=T.INT32, dims=[-1]), "negative dimension"),
    (T(name="c2", data_type=T.INT32, dims=[0, 2**62], raw_data=b""), "cannot represent"),
    (T(name="d", data_type=T.INT8, dims=[2], int32_data=[200, 300]), "out of range for INT8"),
    (T(name="e", data_type=T.UINT32, dims=[1], uint64_data=[2**32]), "out of range for UINT32"),
    (T(name="f", data_type=T.BOOL, dims=[1], int32_data=[2]), "BOOL"),
    (T(name="g", data_type=T.BOOL, dims=[1], raw_data=b"\2"), "BOOL"),
    (T.FromString(T(name="h", data_type=T.FLOAT).SerializeToString() + _vf(14, 5)), "location"),
]


@pytest.mark.parametrize(("tensor", "message"), _BAD_TENSORS, ids=lambda v: getattr(v, "name", ""))
def test_inconsistent_tensors_are_corrupt(tensor: onnx.TensorProto, message: str) -> None:
    graph = h.make_graph([], "g", [], [], [tensor])
    ours = decode_model(h.make_model(graph).SerializeToString()).graph.initializers[0]
    with pytest.raises(CorruptFileError, match=message):
        ours.to_numpy()


def test_unsupported_tensor_and_attribute_types_are_model_format_errors() -> None:
    strings = T(name="s", data_type=T.STRING, dims=[1], string_data=[b"x"])
    tensor = decode_model(
        h.make_model(h.make_graph([], "g", [], [], [strings])).SerializeToString()
    )
    with pytest.raises(ModelFormatError, match="data type 8"):
        tensor.graph.initializers[0].to_numpy()
    node = h.make_node("Foo", [], [], tp=h.make_tensor_type_proto(T.FLOAT, [1]))
    with pytest.raises(ModelFormatError, match="type 13"):
        decode_model(h.make_model(h.make_graph([node], "g", [], [])).SerializeToString())


@pytest.mark.parametrize("module", [decoder_module, types_module], ids=lambda m: m.__name__)
def test_decoder_imports_only_stdlib_and_numpy(module: Any) -> None:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"__future__", "numpy", "engine"}
    assert "numpy" in roots and roots <= allowed, roots - allowed
