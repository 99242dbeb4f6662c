"""Importing .pt2 archives: the real model, refusals, and the four code-execution vectors.

What the malicious-file tests establish, per vector (see tests/engine/malicious.py):

1. ``import_model`` refuses the file in the static screen with ``unsafe_archive``,
   before any loader runs; the payload never runs anywhere.
2. Defence in depth, with the screen bypassed: the isolated child runs the real
   ``torch.export.load`` on the file. The payload DOES run -- inside the sandbox,
   where it can write only the sandbox's own output directory (we see its marker
   there) and cannot create its marker at a host path the test process can write.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.errors import TrainingModeError, UnsafeArchiveError
from engine.fx import to_graph_module
from engine.importers import import_model
from engine.importers._pt2_screen import screen_pt2
from engine.sandbox import run_isolated
from tests.engine.malicious import VECTORS, build_malicious_pt2


def test_digits_import_reproduces_the_exported_program(digits, digits_program) -> None:  # type: ignore[no-untyped-def]
    imported = import_model(digits.pt2)
    assert imported.kind == "pt2"
    assert imported.sha256 == hashlib.sha256(digits.pt2.read_bytes()).hexdigest()
    x = digits.batch()
    with torch.no_grad():
        assert torch.equal(to_graph_module(imported.ir)(x), digits_program.module()(x))
    assert [s.name for s in imported.ir.inputs] == ["x"]


def _export(model: nn.Module, path: Path, **kw: object) -> Path:
    torch.export.save(torch.export.export(model, (torch.randn(4, 3, 6, 6),), **kw), path)  # type: ignore[arg-type]
    return path


def test_training_mode_export_is_refused_with_the_fix(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    with pytest.raises(TrainingModeError, match=r"model\.eval\(\)"):
        import_model(_export(model, tmp_path / "train.pt2"))


def test_dynamic_shapes_are_refused_in_the_screen(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    batch = torch.export.Dim("batch", min=2, max=64)
    path = _export(model, tmp_path / "dyn.pt2", dynamic_shapes=({0: batch},))
    with pytest.raises(UnsafeArchiveError, match="static shapes"):
        import_model(path)


@pytest.mark.parametrize("vector", VECTORS)
def test_malicious_archive_is_refused_before_loading(vector: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = build_malicious_pt2(vector, tmp_path / "evil.pt2", marker)
    with pytest.raises(UnsafeArchiveError) as info:
        import_model(path)
    assert info.value.code == "unsafe_archive"
    assert not marker.exists()


@pytest.mark.parametrize("vector", VECTORS)
def test_malicious_payload_runs_only_inside_the_sandbox(vector: str, tmp_path: Path) -> None:
    host_marker = tmp_path / "host_marker"  # writable by this process, outside the sandbox
    inside_marker = Path("/out/ran_inside")  # the sandbox's output dir is out_dir on the host
    path = build_malicious_pt2(vector, tmp_path / "evil.pt2", (inside_marker, host_marker))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run_isolated("engine.importers._pt2_child", [], input_file=path, out_dir=out_dir)
    assert (out_dir / "ran_inside").read_text() == "pwned", "payload did not run in the sandbox"
    assert not host_marker.exists(), "payload escaped the sandbox"


def _with_member(src: Path, dst: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/", 1)[0]
        for info in zin.infolist():
            zout.writestr(info, zin.read(info))
        zout.writestr(f"{root}/{name}", data)
    return dst


@pytest.mark.parametrize(
    "member",
    [
        "data/aotinductor/model/model.wrapper.so",  # native code, dlopen'ed by the loader
        "serialized_exported_program.json",  # pre-2.8 layout with its own unsafe retry
        "data/constants/opaque_obj_0",
        "extra/../../etc/passwd",
    ],
)
def test_members_outside_the_allow_list_are_refused(digits, tmp_path: Path, member: str) -> None:  # type: ignore[no-untyped-def]
    path = _with_member(digits.pt2, tmp_path / "x.pt2", member, b"\x7fELF")
    with pytest.raises(UnsafeArchiveError, match=r"does not have|not laid out"):
        screen_pt2(path)


def test_opaque_constant_without_pickle_flag_is_refused(tmp_path: Path) -> None:
    """``opaque_obj_*`` constants are pickle.loads'ed whatever use_pickle says."""
    good = tmp_path / "c.pt2"
    model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    _export(model, good)
    buf = io.BytesIO()
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(buf, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("model_constants_config.json"):
                data = (
                    b'{"config": {"k": {"path_name": "opaque_obj_0", "is_param": false,'
                    b' "use_pickle": false, "tensor_meta": null}}}'
                )
            zout.writestr(info, data)
    (tmp_path / "o.pt2").write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match="opaque or custom"):
        screen_pt2(tmp_path / "o.pt2")
