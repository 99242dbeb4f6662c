"""Layers summed in float64: exact on activation codes, the same output at any thread count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.io import save_artifact
from engine.io.importers import import_model
from engine.ir import IRModel, Node, Ref, TensorSpec
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, deterministic_module, exact_bound, inventory

ROOT = Path(__file__).resolve().parents[3]


def _fq_linear(scale: float, zp: int) -> IRModel:
    """x -> fake_quant(x, scale, zp, 0, 255) -> linear(W [3, 4], b [3])."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(3, 4, generator=gen)
    b = torch.tensor([0.5, -1.0, 2.0])
    nodes = (
        Node("fq", "aten.fake_quantize_per_tensor_affine.default", (Ref("x"), scale, zp, 0, 255)),
        Node("y", "aten.linear.default", (Ref("fq"), Ref("w"), Ref("b"))),
    )
    return IRModel((TensorSpec("x", (2, 4), "float32"),), nodes, (Ref("y"),), {"w": w, "b": b})


def test_a_fake_quantized_layer_is_scale_times_the_exact_code_sum_plus_bias() -> None:
    ir = _fq_linear(0.05, 128)
    x = torch.tensor([[0.12, -0.31, 1.0, 6.4], [0.0, 0.026, -0.024, -7.0]])
    codes = torch.clamp(torch.round(x.double() / 0.05) + 128, 0, 255) - 128
    w, b = ir.tensors["w"].double(), ir.tensors["b"].double()
    expected = (0.05 * (codes @ w.T) + b).float()
    assert codes[0].tolist() == [2.0, -6.0, 20.0, 127.0]  # 6.4 / 0.05 = 128 clamps to 255 - 128
    assert torch.equal(deterministic_module(ir)(x), expected)


def test_the_exact_sum_does_not_depend_on_the_order_of_its_terms() -> None:
    """Permuting the K inputs (x's columns and W's together) leaves the output bitwise equal."""
    gen = torch.Generator().manual_seed(1)
    k, scale = 4096, 0.02
    w = (torch.randint(-127, 128, (16, k), generator=gen) * 0.0037).float()
    x = torch.randn(8, k, generator=gen) * 2
    perm = torch.randperm(k, generator=gen)
    outs = []
    for xs, ws in ((x, w), (x[:, perm], w[:, perm])):
        nodes = (
            Node(
                "fq", "aten.fake_quantize_per_tensor_affine.default", (Ref("x"), scale, 3, 0, 255)
            ),
            Node("y", "aten.linear.default", (Ref("fq"), Ref("w"))),
        )
        ir = IRModel((TensorSpec("x", (8, k), "float32"),), nodes, (Ref("y"),), {"w": ws})
        outs.append(deterministic_module(ir)(xs))
    assert exact_bound(w, 255, k) < 2.0**53
    assert torch.equal(outs[0], outs[1])


def test_exact_bound_by_hand() -> None:
    # 0.5 = 0.5 * 2^0 and 0.25 = 0.5 * 2^-1: unit 2^(-1 - 24), largest 0.5 = 2^24 units
    w = torch.tensor([[0.5, 0.25], [0.0, 0.0]])
    assert exact_bound(w, 255, 2) == 2 * 255 * 2.0**24
    # an int8 per-channel weight float32(code * s) of 1408 inputs, 8-bit activation codes
    s = torch.tensor(0.0123)
    w8 = (torch.arange(-127, 128).repeat(6)[:1408] * s).float().reshape(1, -1)
    assert exact_bound(w8, 255, 1408) < 2.0**53


def test_a_float_layer_runs_in_float64_and_rounds_once() -> None:
    gen = torch.Generator().manual_seed(2)
    w, x = torch.randn(5, 300, generator=gen), torch.randn(4, 300, generator=gen)
    nodes = (Node("y", "aten.linear.default", (Ref("x"), Ref("w"))),)
    ir = IRModel((TensorSpec("x", (4, 300), "float32"),), nodes, (Ref("y"),), {"w": w})
    assert torch.equal(deterministic_module(ir)(x), (x.double() @ w.double().T).float())


_EVAL = """
import sys, numpy as np, torch
from dataclasses import replace
from engine.io import load_artifact
torch.set_num_threads(int(sys.argv[3]))
loaded = load_artifact(sys.argv[1])
module = replace(loaded.quantized, ir=loaded.ir.at_batch(4)).module()
images = torch.from_numpy(np.load(sys.argv[2])["images"][:4])
with torch.no_grad():
    np.save(sys.argv[4], module(images).numpy())
"""


@pytest.fixture(scope="module")
def efficientnet_mpq(efficientnet, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """EfficientNet-Lite2, int8 weights and 8-bit activations, calibrated on 8 crops."""
    ir = import_model(efficientnet.pt2, trust_uploads=True).ir.at_batch(8)
    plan = QuantPlan.uniform([layer.name for layer in inventory(ir).layers], LayerFormat())
    images = torch.from_numpy(np.load(efficientnet.npz)["calib/images"][:8])
    qm = apply(ir, plan, [(images,)])
    path = tmp_path_factory.mktemp("exact") / "model.mpq"
    save_artifact(qm, path)
    return path


def test_efficientnet_artifact_gives_the_same_outputs_at_1_and_2_threads(
    efficientnet, efficientnet_mpq: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Two processes (OMP_NUM_THREADS 1 and 2) evaluate model.mpq: bitwise equal logits."""
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"out{threads}.npy"
        env = os.environ | {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        args = [str(efficientnet_mpq), str(efficientnet.npz), str(threads), str(out)]
        subprocess.run([sys.executable, "-c", _EVAL, *args], check=True, env=env, cwd=ROOT)
        outs.append(np.load(out))
    assert outs[0].shape == (4, 1000)
    assert np.array_equal(outs[0], outs[1]), json.dumps(float(np.abs(outs[0] - outs[1]).max()))
