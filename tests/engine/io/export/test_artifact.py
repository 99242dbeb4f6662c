"""Exporting model.mpq from the file alone gives the same ONNX bytes as exporting the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.errors import CorruptFileError
from engine.io import save_artifact
from engine.io.export import export_artifact_onnx, export_onnx
from engine.io.importers import exported_program_to_ir
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply
from examples.digits import load_split

torch.set_num_threads(1)

PLANS = {
    "mixed": {
        "features.0": LayerFormat("fp16"),
        "features.4": LayerFormat("int5", outliers=5),
        "features.7": LayerFormat("cb16", activation="float"),
        "classifier": LayerFormat("int4g32", activation="a4"),
    },
    "int16_int2": {
        "features.0": LayerFormat("int16", activation="a16"),
        "features.4": LayerFormat("int2"),
        "features.7": LayerFormat("fp32"),
        "classifier": LayerFormat("int8", outliers=1),
    },
}


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_artifact_export_equals_model_export(plan: str, digits_program, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ir = exported_program_to_ir(digits_program)
    calibration = [(b,) for b in torch.from_numpy(load_split()[0])[:64].split(32)]
    qm = apply(ir, QuantPlan(PLANS[plan]), calibration)
    save_artifact(qm, tmp_path / "m.mpq")
    from_file = export_artifact_onnx(tmp_path / "m.mpq")
    direct = export_onnx(qm)
    assert from_file.data == direct.data
    assert from_file.report == direct.report


def test_a_file_that_is_not_an_artifact_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m.mpq").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(CorruptFileError) as err:
        export_artifact_onnx(tmp_path / "m.mpq")
    assert err.value.code == "corrupt_file"
