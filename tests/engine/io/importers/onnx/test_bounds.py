"""The ONNX decoder bounds what a file makes it allocate by what the file declares."""

from __future__ import annotations

import resource
from pathlib import Path

import onnx
import pytest
from onnx import helper as h

from engine.errors import ArchiveLimitError, CorruptFileError, OnnxExternalDataError
from engine.io.importers.onnx import FOLD_FLOOR, import_onnx
from engine.io.importers.onnx._proto import MAX_ATTRIBUTE_VALUES, MAX_STRING_BYTES, decode_model
from tests.engine.io.importers.onnx.test_import import _external_model, _point_to
from tests.hostile import onnx_constant_of_shape, onnx_like, onnx_packed_varints

LIMIT = 1 << 30


def test_packed_varints_are_counted_before_they_are_decoded(tmp_path: Path) -> None:
    path = onnx_packed_varints(tmp_path / "v.onnx", mib=32)
    with pytest.raises(ArchiveLimitError, match="varint-encoded numbers") as err:
        import_onnx(path, max_bytes=LIMIT)
    assert err.value.code == "archive_limits_exceeded"


def test_small_packed_varints_still_decode(tmp_path: Path) -> None:
    data = onnx_packed_varints(tmp_path / "v.onnx", mib=1).read_bytes()
    tensor = decode_model(data).graph.initializers[0]
    assert tensor.dims == (1 << 20,) and tensor.int64_data.shape == (1 << 20,)
    with pytest.raises(ArchiveLimitError, match="varint"):
        decode_model(data, max_varint_values=(1 << 20) - 1)


def test_a_large_file_that_only_starts_like_onnx_is_refused(tmp_path: Path) -> None:
    path = onnx_like(tmp_path / "big.onnx", size=256 << 20)
    with pytest.raises(CorruptFileError):
        import_onnx(path, max_bytes=LIMIT)


def _model(node: onnx.NodeProto) -> bytes:
    graph = h.make_graph([node], "g", [], [])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def test_strings_and_attribute_lists_are_capped() -> None:
    long_name = h.make_node("Relu", ["x"], ["y"], name="n" * (MAX_STRING_BYTES + 1))
    with pytest.raises(ArchiveLimitError, match="names and strings"):
        decode_model(_model(long_name))
    many = h.make_node("Pad", ["x"], ["y"], pads=[0] * (MAX_ATTRIBUTE_VALUES + 1))
    with pytest.raises(ArchiveLimitError, match="lists"):
        decode_model(_model(many))


def test_messages_and_names_are_counted() -> None:
    node = h.make_node("Add", ["a", "b"], ["c"])
    data = _model(node)
    assert decode_model(data, max_items=10).graph.nodes[0].op_type == "Add"
    with pytest.raises(ArchiveLimitError, match="messages, names"):
        decode_model(data, max_items=2)


def test_outside_paths_give_one_answer_whether_they_exist_or_not(tmp_path: Path) -> None:
    """No file-existence oracle: the containment check reads the path, not the disk."""
    path, _ = _external_model(tmp_path)
    (tmp_path / "exists.bin").write_bytes(bytes(1536))
    (path.parent / "to_exists.bin").symlink_to(tmp_path / "exists.bin")
    (path.parent / "to_missing.bin").symlink_to(tmp_path / "missing.bin")
    answers = []
    for location in ("../exists.bin", "../missing.bin", "to_exists.bin", "to_missing.bin"):
        _point_to(path, location)
        with pytest.raises(OnnxExternalDataError) as err:
            import_onnx(path, max_bytes=LIMIT)
        answers.append((err.value.code, err.value.message.replace(location, "<location>")))
    assert len(set(answers)) == 1, answers
    assert "outside the model's directory" in answers[0][1]


@pytest.mark.parametrize("offset", ["\u0661\u0662", "1_0", " 8", "+8", "8\n"])
def test_external_offsets_are_ascii_decimal(offset: str, tmp_path: Path) -> None:
    path, _ = _external_model(tmp_path)
    _point_to(path, "w.bin", offset=offset)
    with pytest.raises(OnnxExternalDataError, match="non-negative integer"):
        import_onnx(path, max_bytes=LIMIT)


def test_constants_made_at_import_are_charged_before_they_are_made(tmp_path: Path) -> None:
    """A 130-byte ConstantOfShape of 1 GiB: refused by FOLD_FLOOR + 2 x the file, unallocated."""
    small = import_onnx(onnx_constant_of_shape(tmp_path / "s.onnx", numel=4), max_bytes=LIMIT)
    assert small.tensors and small.nodes[0].op == "aten.add.Tensor"
    path = onnx_constant_of_shape(tmp_path / "big.onnx")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ArchiveLimitError, match="1073741824-byte constant"):
        import_onnx(path, max_bytes=8 << 30)
    assert FOLD_FLOOR < 1 << 30
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 << 10  # KiB
