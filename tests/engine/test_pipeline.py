"""The file-to-file pipeline: what ``mpq eval`` scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine import evaluate_file
from tests.conftest import Digits


def _without_calib(digits: Digits, tmp_path: Path) -> Path:
    with np.load(digits.npz) as f:
        arrays = {k: f[k] for k in f.files if not k.startswith("calib/")}
    path = tmp_path / "test.npz"
    np.savez(path, **arrays)
    return path


def test_scoring_a_float_model_uses_every_sample_of_a_file_without_calib(
    digits: Digits, tmp_path: Path
) -> None:
    data = _without_calib(digits, tmp_path)
    report = evaluate_file(digits.pt2, data, metric="accuracy")
    assert report.samples == 540
    assert any("all 540 of its samples are evaluated" in n for n in report.notes), report.notes


def test_a_float_model_run_integer_only_still_holds_its_calibration_samples_out(
    digits: Digits, tmp_path: Path
) -> None:
    data = _without_calib(digits, tmp_path)
    report = evaluate_file(digits.pt2, data, metric="accuracy", integer_only=True)
    assert report.samples == 540 - 135  # calibration: max(1, min(256, 540 // 4)) = 135
    assert any("calibration = 135 of its 540 samples" in n for n in report.notes), report.notes
