"""Importing .pt2 archives: the real model, refusals, and the code-execution vectors.

What the malicious-file tests establish, per vector (see tests/engine/io/malicious.py):

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
import json
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import torch
from torch import nn

from engine.errors import CorruptFileError, TrainingModeError, UnsafeArchiveError
from engine.io import run_isolated
from engine.io.importers import import_model
from engine.io.importers._pt2_screen import screen_pt2
from engine.io.importers.pt2 import _without_sample_inputs
from engine.ir import to_graph_module
from tests.engine.io.malicious import VECTORS, build_malicious_pt2


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


def test_dynamic_shape_exports_pass_the_screen(tmp_path: Path) -> None:
    """Only the screen: the isolated converter may still refuse a dynamic program."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten()).eval()
    batch = torch.export.Dim("batch", min=2, max=64)
    screen_pt2(_export(model, tmp_path / "batch.pt2", dynamic_shapes=({0: batch},)))
    auto = torch.export.Dim.AUTO
    screen_pt2(_export(model, tmp_path / "auto.pt2", dynamic_shapes=({0: auto, 2: auto, 3: auto},)))


def test_float_shape_arithmetic_is_refused_in_the_screen(tmp_path: Path) -> None:
    model = nn.Upsample(scale_factor=1.5).eval()  # sizes become TruncToInt(Float('1.5')*...)
    auto = torch.export.Dim.AUTO
    path = _export(model, tmp_path / "f.pt2", dynamic_shapes=({2: auto, 3: auto},))
    with pytest.raises(UnsafeArchiveError, match=r"integer shape arithmetic.*not allowed"):
        screen_pt2(path)


def _rewrite(
    src: Path, dst: Path, edits: dict[str, bytes], compression: int = zipfile.ZIP_STORED
) -> Path:
    """Copy ``src`` to ``dst`` with the members named (without the root) in ``edits`` replaced."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            tail = info.filename.split("/", 1)[1]
            zout.writestr(info.filename, edits.get(tail, zin.read(info)))
    return dst


def _edit_program(src: Path, dst: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    with zipfile.ZipFile(src) as zin:
        doc = json.loads(zin.read(zin.namelist()[0].split("/")[0] + "/models/model.json"))
    edit(doc)
    return _rewrite(src, dst, {"models/model.json": json.dumps(doc).encode()})


def _first_sym_expr(doc: dict[str, Any]) -> dict[str, Any]:
    for value in doc["graph_module"]["graph"]["tensor_values"].values():
        for size in value["sizes"]:
            if "as_expr" in size:
                return cast(dict[str, Any], size["as_expr"])
    raise AssertionError("no symbolic size")


@pytest.fixture(scope="module")
def dynamic_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    program = torch.export.export(
        model, (torch.randn(2, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    path = tmp_path_factory.mktemp("dyn") / "dyn.pt2"
    torch.export.save(program, path)
    return path


_PAYLOAD = "__import__('os').system('touch /tmp/mpq-pwned')"


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda d: _first_sym_expr(d).update(expr_str=_PAYLOAD), "unexpected character '_'"),
        (lambda d: _first_sym_expr(d).update(expr_str=[_PAYLOAD]), "expected a string"),
        (lambda d: _first_sym_expr(d).update(expr_str="Symbol('s0').func"), "'.'"),
        (lambda d: _first_sym_expr(d).update(hint={"as_int": "2"}), "hint"),
        (lambda d: _first_sym_expr(d).update(hint={"as_float": 2.0}), "hint"),
        (lambda d: _first_sym_expr(d).update(extra="s0"), "fields"),
        (lambda d: d["range_constraints"].update(s0={"min_val": _PAYLOAD}), "integer or null"),
        (lambda d: d["range_constraints"].update({_PAYLOAD: {"min_val": 0}}), "shape string"),
        (lambda d: d.update(guards_code=[f"L['x'].size()[0] == {_PAYLOAD}"]), "shape string"),
        (lambda d: d.update(guards_code="L['x'].size()[0] == 2"), "malformed guards_code"),
    ],
)
def test_crafted_shape_fields_are_refused(
    dynamic_pt2: Path, tmp_path: Path, edit: Callable[[dict[str, Any]], None], reason: str
) -> None:
    path = _edit_program(dynamic_pt2, tmp_path / "evil.pt2", edit)
    with pytest.raises(UnsafeArchiveError, match=reason):
        screen_pt2(path)


def test_shape_strings_have_a_total_budget(
    dynamic_pt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen_pt2(dynamic_pt2)
    monkeypatch.setattr("engine.io.importers._pt2_screen._MAX_EXPR_TEXT", 40)
    with pytest.raises(UnsafeArchiveError, match="distinct symbolic shape strings"):
        screen_pt2(dynamic_pt2)


def test_guards_code_runs_code_in_module_but_not_from_the_sandbox_copy(
    dynamic_pt2: Path, tmp_path: Path
) -> None:
    """``ExportedProgram.module()`` execs ``guards_code`` when the archive has example inputs.

    The screen refuses such a guard (above); the copy the sandbox gets has no example
    inputs, so even an unscreened guard does not run there.
    """
    marker = tmp_path / "marker"
    payload = f"open({str(marker)!r}, 'w').write('pwned') > 0"
    evil = _edit_program(
        dynamic_pt2, tmp_path / "evil.pt2", lambda d: d.update(guards_code=[payload])
    )
    copy = _without_sample_inputs(evil, tmp_path / "copy.pt2")
    run = (
        "import os, sys, torch\n"
        "for path in sys.argv[2:]:\n"
        "    torch.export.load(path).module()(torch.randn(3, 4))\n"
        "    print(os.path.exists(sys.argv[1]))"
    )
    argv = [sys.executable, "-c", run, str(marker), str(copy), str(evil)]
    result = subprocess.run(argv, check=True, capture_output=True, text=True)
    assert result.stdout.split() == ["False", "True"]  # the copy ran no guard; the original did
    assert marker.read_text() == "pwned"


class _Exec:
    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (self.source,))


def _torch_save(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def large_sample_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static image model exported with a batch of 32 224x224 images (19 MB of inputs)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    program = torch.export.export(model, (torch.zeros(32, 3, 224, 224),))
    path = tmp_path_factory.mktemp("large") / "large.pt2"
    torch.export.save(program, path)
    with zipfile.ZipFile(path) as zf:
        sample = next(i for i in zf.infolist() if "sample_inputs" in i.filename)
    assert sample.file_size > 16 * 2**20  # the screen's cap on a pickle read whole
    return path


def test_large_sample_inputs_import_and_the_screen_reads_only_their_pickle(
    large_sample_pt2: Path,
) -> None:
    tracemalloc.start()
    try:
        screen_pt2(large_sample_pt2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20
    imported = import_model(large_sample_pt2)
    assert imported.ir.inputs[0].shape[1:] == (3, 224, 224)


def test_large_unsafe_sample_inputs_are_still_refused(
    large_sample_pt2: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    payload = _torch_save((torch.zeros(5_000_000), _Exec(f"open({str(marker)!r}, 'w')")))
    assert len(payload) > 16 * 2**20
    path = _rewrite(large_sample_pt2, tmp_path / "e.pt2", {"data/sample_inputs/model.pt": payload})
    with pytest.raises(UnsafeArchiveError, match=r"references __builtin__\.exec"):
        import_model(path)
    assert not marker.exists()


def test_compressed_sample_inputs_are_screened_too(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    screen_pt2(_rewrite(digits.pt2, tmp_path / "d.pt2", {}, zipfile.ZIP_DEFLATED))
    evil = build_malicious_pt2("weights_only_retry", tmp_path / "evil.pt2", tmp_path / "marker")
    with pytest.raises(UnsafeArchiveError, match="references"):
        screen_pt2(_rewrite(evil, tmp_path / "e.pt2", {}, zipfile.ZIP_DEFLATED))


def test_a_nested_directory_claiming_megabytes_is_refused_unread(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    nested = bytearray(_torch_save((torch.zeros(2_000_000),)))  # an 8 MB nested zip
    zip64_end = len(nested) - 22 - 20 - 56  # torch.save writes zip64 end records
    assert nested[zip64_end : zip64_end + 4] == b"PK\x06\x06"
    nested[zip64_end + 40 : zip64_end + 56] = struct.pack("<QQ", zip64_end, 0)  # size, offset
    path = _rewrite(digits.pt2, tmp_path / "x.pt2", {"data/sample_inputs/model.pt": bytes(nested)})
    with pytest.raises(UnsafeArchiveError, match="byte read"):
        screen_pt2(path)


def test_a_damaged_weight_is_found_while_copying_for_the_sandbox(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(digits.pt2.read_bytes())
    with zipfile.ZipFile(digits.pt2) as zf:
        weight = next(i for i in zf.infolist() if i.filename.endswith("/data/weights/weight_0"))
    name_len, extra_len = struct.unpack(
        "<HH", data[weight.header_offset + 26 : weight.header_offset + 30]
    )
    data[weight.header_offset + 30 + name_len + extra_len] ^= 0xFF  # the CRC no longer matches
    (tmp_path / "bad.pt2").write_bytes(data)
    screen_pt2(tmp_path / "bad.pt2")  # the screen reads no weights
    with pytest.raises(CorruptFileError, match=r"weight_0.*damaged"):
        import_model(tmp_path / "bad.pt2")


def test_the_sandbox_copy_has_no_sample_inputs_and_loads_the_same_program(  # type: ignore[no-untyped-def]
    digits, digits_program, tmp_path: Path
) -> None:
    copy = _without_sample_inputs(digits.pt2, tmp_path / "copy.pt2")
    with zipfile.ZipFile(digits.pt2) as zin, zipfile.ZipFile(copy) as zcopy:
        assert zcopy.namelist() == zin.namelist()
        for info in zcopy.infolist():
            sample = "/data/sample_inputs/" in info.filename
            assert zcopy.read(info) == (b"" if sample else zin.read(info.filename))
    screen_pt2(copy)
    program = torch.export.load(copy)  # our own genuine export: safe to load here
    assert program.example_inputs is None and digits_program.example_inputs is not None
    assert str(program.graph) == str(digits_program.graph)
    x = digits.batch()
    with torch.no_grad():
        assert torch.equal(program.module()(x), digits_program.module()(x))


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
    run_isolated("engine.io.importers._pt2_child", [], input_file=path, out_dir=out_dir)
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
        "data/weights/weight_\u0661",  # an Arabic-Indic digit: \d would match it
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
