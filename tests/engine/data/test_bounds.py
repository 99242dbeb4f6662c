"""Data files are bounded by what they declare, before anything is decompressed or parsed."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engine.data import read_arrays
from engine.data._headers import SAFETENSORS_DEPTH, json_depth_at_most
from engine.errors import CorruptFileError, DataFormatError, DataTooLargeError
from engine.ir import read_safetensors
from tests.hostile import npz_bomb, safetensors_nested

LIMIT = 512 << 20


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return npz_bomb(tmp_path_factory.mktemp("bomb") / "blob-7f3a.npz")


def test_npz_declaring_a_gibibyte_is_refused_by_its_directory(bomb: Path) -> None:
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(DataTooLargeError) as err:
        read_arrays(bomb, LIMIT, name="probe.npz")
    assert err.value.code == "data_too_large"
    message = err.value.message
    assert "'probe.npz'" in message and "blob-7f3a" not in message
    assert str(2**30 + 128) in message and str(LIMIT) in message


def test_npz_bomb_under_a_large_limit_is_refused_by_its_ratio(bomb: Path) -> None:
    with pytest.raises(DataTooLargeError, match=r"expands \d+x"):
        read_arrays(bomb, 2 << 30)


def test_npz_member_compressed_otherwise_than_savez_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.npz"
    np.savez(path, x=np.zeros(4, np.float32))
    raw = zipfile.ZipFile(path).read("x.npy")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("x.npy", raw)
    with pytest.raises(DataFormatError, match=r"np\.savez does not use"):
        read_arrays(path, LIMIT)


def test_npz_header_declaring_more_than_its_member_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lie.npz"
    np.savez(path, x=np.zeros(4, np.float32))
    raw = zipfile.ZipFile(path).read("x.npy").replace(b"(4,)", b"(9999999,)")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", raw)
    with pytest.raises(CorruptFileError, match="declares shape"):
        read_arrays(path, LIMIT)


def test_safetensors_header_nested_100000_deep_is_refused(tmp_path: Path) -> None:
    path = safetensors_nested(tmp_path / "blob-1.safetensors")
    with pytest.raises(DataFormatError) as err:
        read_arrays(path, LIMIT, name="deep.safetensors")
    assert err.value.code == "unsupported_data_format"
    assert "'deep.safetensors'" in err.value.message and "nested deeper" in err.value.message


def _safetensors(path: Path, header: dict[str, object], body: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)
    return path


def test_safetensors_offsets_are_checked_against_the_file(tmp_path: Path) -> None:
    entry = {"dtype": "F32", "shape": [1 << 20], "data_offsets": [0, 4 << 20]}
    path = _safetensors(tmp_path / "t.safetensors", {"x": entry}, bytes(16))
    with pytest.raises(CorruptFileError, match="data region"):
        read_arrays(path, LIMIT, name="t.safetensors")
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(CorruptFileError, match="header"):
        read_arrays(path, LIMIT)


def test_valid_safetensors_still_reads(tmp_path: Path) -> None:
    entry = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    body = np.arange(4, dtype="<f4").tobytes()
    header = {"__metadata__": {"a": "b"}, "x": entry}
    arrays = read_arrays(_safetensors(tmp_path / "t.safetensors", header, body), LIMIT)
    assert arrays["x"].tolist() == [[0.0, 1.0], [2.0, 3.0]]


@pytest.mark.parametrize(
    ("text", "levels", "ok"),
    [
        (b'{"a": {"b": [1, 2]}}', 3, True),
        (b'{"a": {"b": [1, 2]}}', 2, False),
        (b'{"a": "[[[[[[{{{{"}', 1, True),  # brackets inside strings do not count
        (b'{"a\\"[[[": "\\\\", "b": []}', 2, True),  # escaped quotes and backslashes
        (b"[" * 100_000 + b"]" * 100_000, SAFETENSORS_DEPTH, False),
        (b"{]", 4, False),
        (b"3", 0, True),
    ],
)
def test_json_depth_at_most(text: bytes, levels: int, ok: bool) -> None:
    assert json_depth_at_most(text, levels) is ok


def test_the_shared_safetensors_reader_refuses_deep_nesting_too(tmp_path: Path) -> None:
    """IR files and artifacts are read by engine.ir.read_safetensors: no RecursionError there."""
    with pytest.raises(CorruptFileError, match="nested too deep"):
        read_safetensors(safetensors_nested(tmp_path / "deep.safetensors"))
