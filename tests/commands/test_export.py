"""`mpq export` as users run it: a real subprocess, the written file run by onnxruntime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

MPQ = [sys.executable, "-m", "commands"]


def _mpq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MPQ, *args], capture_output=True, text=True, timeout=300)


def _top1(path: Path, npz: Path) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    arrays = np.load(npz)
    x, labels = arrays["x"], arrays["labels"]
    n = len(x) // 32 * 32  # the exported batch size is 32
    logits = np.concatenate([session.run(None, {"x": x[i : i + 32]})[0] for i in range(0, n, 32)])
    return float((logits.argmax(1) == labels[:n]).mean())


def test_export_an_artifact_as_qdq_onnx(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mpq, out = tmp_path / "model.mpq", tmp_path / "model.onnx"
    run = _mpq(
        "quantize",
        str(digits.onnx),
        "--data",
        str(digits.npz),
        "--uniform",
        "int4",
        "--out",
        str(mpq),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    quantized = json.loads(run.stdout)["quantized_metric"]
    run = _mpq("export", str(mpq), "--format", "onnx", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["kind"] == "mpq" and doc["format"] == "onnx" and doc["opset"] == 21
    assert doc["file_bytes"] == out.stat().st_size
    assert [r["layer"] for r in doc["layers"]] == [
        "features.0",
        "features.4",
        "features.7",
        "classifier",
    ]
    assert all(r["stored_as"].startswith("INT4 codes") for r in doc["layers"])
    assert doc["activations"] == {"uint8": 4}
    onnx.checker.check_model(onnx.load(out), full_check=True)
    assert abs(_top1(out, digits.npz) - quantized) <= 0.003


def test_export_a_float_model_prints_a_summary(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "float.onnx"
    run = _mpq("export", str(digits.onnx), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"wrote {out}: ") and "(from onnx)" in run.stdout
    assert _top1(out, digits.npz) > 0.95


def test_export_errors_exit_2_with_their_codes(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "m.onnx"
    run = _mpq("export", str(tmp_path / "nope.mpq"), "--out", str(out))
    assert (run.returncode, run.stderr.split(":")[0]) == (2, "error[file_not_found]")
    run = _mpq("export", str(digits.onnx), "--out", str(out), "--opset", "13")
    assert (run.returncode, run.stderr.split(":")[0]) == (2, "error[unsupported_export]")
    assert not out.exists() and not (tmp_path / "m.onnx.partial").exists()
