"""Shared fixtures: the real example model, trained once per test run."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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
    return Digits(out / "digits.pt2", out / "digits.onnx", out / "digits.npz")


@pytest.fixture(scope="session")
def digits_program(digits: Digits) -> torch.export.ExportedProgram:
    """The exported program loaded in the test process (our own trusted file)."""
    return torch.export.load(digits.pt2)
