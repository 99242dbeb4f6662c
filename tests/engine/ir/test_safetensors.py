"""engine.ir._safetensors against the reference `safetensors` package, and hostile files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

from engine.errors import CorruptFileError
from engine.ir import read_safetensors, write_safetensors


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "f32": torch.randn(3, 4, generator=g),
        "f64": torch.randn(5, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 2, generator=g).half(),
        "bf16": torch.randn(7, generator=g).bfloat16(),
        "i64": torch.arange(-3, 3),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
    }


def test_written_file_reads_back_in_reference_library(tmp_path: Path) -> None:
    t = _tensors()
    size = write_safetensors(tmp_path / "a.safetensors", t, metadata={"k": "v"})
    assert size == (tmp_path / "a.safetensors").stat().st_size
    ref = safetensors.torch.load_file(tmp_path / "a.safetensors")
    assert set(ref) == set(t)
    for k in t:
        assert ref[k].dtype == t[k].dtype and torch.equal(ref[k], t[k]), k


def test_reads_reference_library_files(tmp_path: Path) -> None:
    t = _tensors()
    safetensors.torch.save_file(t, tmp_path / "b.safetensors", metadata={"k": "v"})
    got, meta = read_safetensors(tmp_path / "b.safetensors")
    assert meta == {"k": "v"}
    for k in t:
        assert got[k].dtype == t[k].dtype and torch.equal(got[k], t[k]), k


def test_round_trip_is_byte_stable(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "a", _tensors())
    got, _ = read_safetensors(tmp_path / "a")
    write_safetensors(tmp_path / "b", got)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def _raw(header: dict[str, object], body: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "too short"),
        (struct.pack("<Q", 10**12) + b"{}", "header"),
        (struct.pack("<Q", 4) + b"nope", "not JSON"),
        (_raw({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4), "needs"),
        (
            _raw({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8),
            "trailing",
        ),
        (_raw({"a": {"dtype": "XX", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "dtype"),
        (_raw({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "shape"),
        (
            _raw(
                {
                    "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                    "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                },
                b"\0" * 8,
            ),
            "gap or overlap",
        ),
        (_raw({"a": {"dtype": "BOOL", "shape": [1], "data_offsets": [0, 1]}}, b"\x07"), "bool"),
        (_raw({"__metadata__": {"a": 1}}, b""), "strings"),
    ],
)
def test_hostile_files_raise_corrupt_file(tmp_path: Path, data: bytes, why: str) -> None:
    p = tmp_path / "bad.safetensors"
    p.write_bytes(data)
    with pytest.raises(CorruptFileError, match=why):
        read_safetensors(p)
