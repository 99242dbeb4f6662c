"""Recognising uploads by their bytes, and refusing every non-model with its own code."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from engine.errors import MPQError
from engine.io.importers import import_model
from engine.io.importers._sniff import ArchiveLimits, check_zip_limits, sniff


def _torch_save(path: Path, **kw: object) -> Path:
    torch.save(nn.Linear(2, 2), path, **kw)  # type: ignore[arg-type]
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npz(path: Path) -> Path:
    with open(path, "wb") as f:
        np.savez(f, x=np.zeros(3))
    return path


def _torchscript(path: Path) -> Path:
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    return path


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda p: _torch_save(p), "torch_save_pickle"),
        (lambda p: _torch_save(p, _use_new_zipfile_serialization=False), "torch_save_pickle"),
        (lambda p: _torchscript(p), "torchscript_archive"),
        (lambda p: _write(p, b""), "corrupt_file"),
        (lambda p: _write(p, b"hello, world\n"), "unsupported_model_format"),
        (lambda p: _npz(p), "unsupported_model_format"),
        (lambda p: _write(p, b"PK\x03\x04" + b"\0" * 40), "corrupt_file"),
    ],
    ids=["torch_save", "legacy_pickle", "torchscript", "empty", "text", "npz", "broken_zip"],
)
def test_non_models_are_refused_with_their_own_code(tmp_path: Path, make, code: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path / "upload.bin")
    with pytest.raises(MPQError) as info:
        import_model(path)
    assert info.value.code == code
    if code in ("torch_save_pickle", "torchscript_archive", "unsupported_model_format"):
        assert "torch.export.export(model.eval()" in info.value.message  # says how to export


def test_truncated_pt2_is_refused_as_corrupt(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = digits.pt2.read_bytes()
    for cut in (len(data) // 3, len(data) - 100):
        (tmp_path / "cut.pt2").write_bytes(data[:cut])
        with pytest.raises(MPQError) as info:
            import_model(tmp_path / "cut.pt2")
        assert info.value.code == "corrupt_file"


def test_formats_are_recognised(digits) -> None:  # type: ignore[no-untyped-def]
    assert sniff(digits.pt2) == "pt2"
    assert sniff(digits.onnx) == "onnx"


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_is_refused_by_ratio(tmp_path: Path) -> None:
    (tmp_path / "bomb.pt2").write_bytes(_zip({"a/models/model.json": b"\0" * (8 * 1024**2)}))
    with pytest.raises(MPQError) as info:
        import_model(tmp_path / "bomb.pt2")
    assert info.value.code == "archive_limits_exceeded" and "zip bomb" in info.value.message


def test_member_count_and_total_size_limits(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    path.write_bytes(_zip({f"a/data/weights/weight_{i}": b"x" * 100 for i in range(50)}))
    with pytest.raises(MPQError, match="50 members"):
        check_zip_limits(path, ArchiveLimits(max_members=49))
    with pytest.raises(MPQError, match="unpacks to 5000 bytes"):
        check_zip_limits(path, ArchiveLimits(max_total_bytes=4999))
    assert len(check_zip_limits(path, ArchiveLimits())) == 50
