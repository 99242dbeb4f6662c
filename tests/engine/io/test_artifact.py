"""The packed artifact: golden bytes, exact size prediction, bit-identical reload."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.errors import CorruptFileError
from engine.io import load_artifact, predict_model_payload, predict_payload_bytes, save_artifact
from engine.io.importers import exported_program_to_ir
from engine.ir import IRModel, Node, Ref, TensorSpec, read_safetensors, write_safetensors
from engine.quant import AffineQParams, CodebookQParams, LayerFormat, QuantPlan
from engine.transforms import QuantizedModel, apply, inventory
from examples.digits import load_split


def _tiny() -> IRModel:
    return IRModel(
        inputs=(TensorSpec("x", (1, 4), "float32"),),
        nodes=(Node("fc", "aten.linear.default", (Ref("x"), Ref("fc.weight"), Ref("fc.bias"))),),
        outputs=(Ref("fc"),),
        tensors={
            "fc.weight": torch.tensor([[0.7, -0.3, 0.0, 0.1], [1.0, 0.6, -1.0, 0.25]]),
            "fc.bias": torch.tensor([0.5, -0.5]),
        },
    )


def test_golden_bytes_of_a_tiny_model(tmp_path: Path) -> None:
    plan = QuantPlan({"fc": LayerFormat("int4", activation="float")})
    qm = apply(_tiny(), plan, [(torch.ones(1, 4),)])
    size = save_artifact(qm, tmp_path / "m.mpq", source_sha256="0" * 64)
    tensors, _ = read_safetensors(tmp_path / "m.mpq")
    # int4, qmax 7: row 0 scale 0.7/7 = 0.1 -> codes [7, -3, 0, 1]; row 1 scale 1/7 ->
    # [7, 4.2 -> 4, -7, 1.75 -> 2]; +8 offset -> [15, 5, 8, 9], [15, 12, 1, 10];
    # 4-bit little-endian nibbles -> 0x5F 0x98 0xCF 0xA1
    assert tensors["fc.weight.codes"].tolist() == [0x5F, 0x98, 0xCF, 0xA1]
    torch.testing.assert_close(tensors["fc.weight.scale"], torch.tensor([0.1, 1 / 7]))
    assert set(tensors) == {"fc.weight.codes", "fc.weight.scale", "fc.bias"}
    art = load_artifact(tmp_path / "m.mpq")
    assert art.payload_bytes == 4 + 8 + 8 == predict_payload_bytes(plan, {"fc": (2, 4)}, 8)
    assert art.file_bytes == size == (tmp_path / "m.mpq").stat().st_size
    # the whole file is pinned: if this changes, the format changed -> bump ARTIFACT_VERSION
    digest = hashlib.sha256((tmp_path / "m.mpq").read_bytes()).hexdigest()
    assert digest == GOLDEN_SHA256


GOLDEN_SHA256 = "ad50d55d46f848d6a1a6c685dc49b79d62abeac933f8ee00e5155695a1875488"


@pytest.fixture(scope="module")
def digits_setup(digits_program):  # type: ignore[no-untyped-def]
    ir = exported_program_to_ir(digits_program)
    calibration = [(b,) for b in torch.from_numpy(load_split()[0])[:256].split(32)]
    return ir, calibration, [layer.name for layer in inventory(ir).layers]


PLANS = {
    "int3_gptq": lambda n: {k: LayerFormat("int3", rounding="gptq", scale="mse") for k in n},
    "mixed": lambda n: {
        "features.0": LayerFormat("fp16"),
        "features.4": LayerFormat("int5", outliers=5),
        "features.7": LayerFormat("cb16", activation="float"),
        "classifier": LayerFormat("int4g32", activation="a4"),
    },
    "int16": lambda n: {k: LayerFormat("int16", activation="a16") for k in n},
    "fp32_cb2": lambda n: {k: LayerFormat("cb2" if k == "classifier" else "fp32") for k in n},
}


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_reload_is_bit_identical_and_size_is_predicted(
    plan: str,
    digits,  # type: ignore[no-untyped-def]
    digits_setup,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    ir, calibration, names = digits_setup
    qm = apply(ir, QuantPlan(PLANS[plan](names)), calibration)
    save_artifact(qm, tmp_path / "m.mpq", metrics={"accuracy": 0.5})
    art = load_artifact(tmp_path / "m.mpq")
    x = digits.batch()
    with torch.no_grad():
        assert torch.equal(art.module()(x), qm.module()(x))
    assert art.payload_bytes == predict_model_payload(qm)
    assert art.plan == qm.plan and art.manifest["metrics"] == {"accuracy": 0.5}
    _assert_same_quantized_model(art.quantized, qm)


def _assert_same_quantized_model(got: QuantizedModel, want: QuantizedModel) -> None:
    """Everything integer lowering and export read survives the file exactly."""
    assert [layer.name for layer in got.layers] == [layer.name for layer in want.layers]
    assert got.ranges == want.ranges and len(want.ranges) == 10  # one per float node
    assert set(got.activations) == set(want.activations)
    for name, a in want.activations.items():
        b = got.activations[name]
        assert torch.equal(a.scale, b.scale) and torch.equal(a.zero_point, b.zero_point)
        assert (a.qmin, a.qmax) == (b.qmin, b.qmax)
    for name, w in want.weights.items():
        v = got.weights[name]
        assert v.fmt == w.fmt and torch.equal(v.values, w.values)
        assert (v.codes is None) == (w.codes is None)
        if w.codes is not None and v.codes is not None:
            assert torch.equal(v.codes, w.codes)
        if isinstance(w.qparams, AffineQParams):
            assert isinstance(v.qparams, AffineQParams)
            assert torch.equal(v.qparams.scale, w.qparams.scale)
            assert (v.qparams.qmin, v.qparams.qmax, v.qparams.group_size) == (
                w.qparams.qmin,
                w.qparams.qmax,
                w.qparams.group_size,
            )
        elif isinstance(w.qparams, CodebookQParams):
            assert isinstance(v.qparams, CodebookQParams)
            assert torch.equal(v.qparams.centroids, w.qparams.centroids)
        else:
            assert v.qparams is None
        if w.outlier_index is not None:
            assert v.outlier_index is not None
            assert torch.equal(v.outlier_index.sort().values, w.outlier_index.sort().values)


def test_a_fresh_process_reproduces_the_outputs(digits, digits_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ir, calibration, names = digits_setup
    qm = apply(ir, QuantPlan(PLANS["int3_gptq"](names)), calibration)
    save_artifact(qm, tmp_path / "m.mpq")
    with torch.no_grad():
        expected = qm.module()(digits.batch()).numpy().tobytes()
    script = (
        "import sys, hashlib, numpy as np, torch, engine;"
        "m = engine.load_artifact(sys.argv[1]).module();"
        "x = torch.from_numpy(np.load(sys.argv[2])['x'][:32]);"
        "print(hashlib.sha256(m(x).detach().numpy().tobytes()).hexdigest())"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "m.mpq"), str(digits.npz)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert run.stdout.strip() == hashlib.sha256(expected).hexdigest()


def test_damaged_artifacts_are_refused(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "plain", {"w": torch.ones(1)})
    with pytest.raises(CorruptFileError, match="not an MPQ artifact"):
        load_artifact(tmp_path / "plain")
    qm = apply(_tiny(), QuantPlan({"fc": LayerFormat("int4", "float")}), [(torch.ones(1, 4),)])
    save_artifact(qm, tmp_path / "m.mpq")
    tensors, meta = read_safetensors(tmp_path / "m.mpq")
    tensors["fc.weight.codes"] = tensors["fc.weight.codes"][:3]  # one byte short
    write_safetensors(tmp_path / "cut.mpq", tensors, metadata=meta)
    with pytest.raises(CorruptFileError, match="damaged"):
        load_artifact(tmp_path / "cut.mpq")
