"""Integer-only models: the digits CNN within 0.2 pt of simulation, EfficientNet-Lite2
(depthwise convs, ReLU6, TF "same" padding, dead channels after folding) agreeing with its
simulation on 31 of 32 images and node by node, reports, artifacts, MiniLM with its float
islands listed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine import import_model
from engine.data import Dataset, accuracy, cosine, evaluate, load_dataset
from engine.errors import MPQError
from engine.io import load_artifact, save_artifact
from engine.ir import to_graph_module
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import QuantizedModel, apply, inventory
from engine.transforms.integer import QTensor, lower_to_integer

LAYERS = ("features.0", "features.4", "features.7", "classifier")
DIGITS_PLANS = {
    "int8": lambda: {k: LayerFormat("int8") for k in LAYERS},
    "mixed": lambda: {
        "features.0": LayerFormat("int8"),
        "features.4": LayerFormat("int4", rounding="gptq", scale="mse"),
        "features.7": LayerFormat("cb16"),
        "classifier": LayerFormat("int6", outliers=3),
    },
    "int3_gptq": lambda: {k: LayerFormat("int3", rounding="gptq", scale="mse") for k in LAYERS},
}


@pytest.fixture(scope="module")
def digits_data(digits) -> tuple[object, Dataset]:  # type: ignore[no-untyped-def]
    ir = import_model(digits.pt2, trust_uploads=True).ir
    return ir, load_dataset(digits.npz, ir.inputs)


def _apply(digits_data: tuple[object, Dataset], plan: str) -> QuantizedModel:
    ir, data = digits_data
    calibration = [b.tensors for b in data.batches("calibration")]
    return apply(ir, QuantPlan(DIGITS_PLANS[plan]()), calibration)  # type: ignore[arg-type]


@pytest.mark.parametrize("plan", sorted(DIGITS_PLANS))
def test_digits_integer_only_is_within_0_2_pt_of_simulation(plan: str, digits_data) -> None:  # type: ignore[no-untyped-def]
    _, data = digits_data
    qm = _apply(digits_data, plan)
    im = lower_to_integer(qm)
    labels = data.evaluation.labels
    sim = accuracy(evaluate(qm.module(), data, "evaluation"), labels)
    got = accuracy(evaluate(im, data, "evaluation"), labels)
    assert abs(got - sim) <= 0.002, (plan, sim, got)  # 540 images: one may differ
    assert got >= 0.98
    rep = im.report
    assert rep.integer_only == "full" and rep.islands == {} and rep.island_nodes == ()
    assert [r.execution for r in rep.layers] == ["integer"] * 4
    assert all(8 < r.acc_bits <= 32 and not r.overflows_int32 for r in rep.layers)
    if plan == "mixed":
        storage = {r.name: r.weight for r in rep.layers}
        assert storage["features.7"] == "cb16: int8 centroids, lookup"
        assert storage["classifier"] == "int6, 3 outliers as wide integers"


def test_efficientnet_integer_only_agrees_with_simulation(efficientnet_int8) -> None:  # type: ignore[no-untyped-def]
    qm, images = efficientnet_int8
    im = lower_to_integer(qm)
    rep = im.report
    # padding runs on codes, every int32 bias fits: nothing in float, nothing beyond int32
    assert rep.integer_only == "full" and rep.islands == {}, rep.islands
    assert all(r.execution == "integer" and r.acc_bits <= 32 for r in rep.layers)
    assert any("at a coarser scale for an int32 bias" in r.weight for r in rep.layers)
    with torch.no_grad():
        sim, got = qm.module()(images), im(images)
    differ = int((sim.argmax(-1) != got.argmax(-1)).sum())
    assert differ <= 1, f"{differ} of 32 top-1 classes differ"
    assert cosine(got, sim) > 0.99


def test_every_tensor_between_entry_and_exit_is_integer(digits_data) -> None:  # type: ignore[no-untyped-def]
    _, data = digits_data
    im = lower_to_integer(_apply(digits_data, "mixed"))
    x = next(iter(data.batches("evaluation"))).tensors
    env = im.trace(*x)
    values = [env[n.name] for n in im.qm.ir.nodes]
    assert all(isinstance(v, QTensor) and v.q.dtype == torch.int64 for v in values)
    # ReLU after a conv is a clamp at the zero point: nothing below real 0 survives
    relu = env["relu"]
    assert int(relu.q.min()) >= relu.spec.zero_point


def test_accumulators_beyond_int32_are_reported(digits_data) -> None:  # type: ignore[no-untyped-def]
    ir, data = digits_data
    names = [layer.name for layer in inventory(ir).layers]
    plan = QuantPlan({k: LayerFormat("int16", activation="a16") for k in names})
    qm = apply(ir, plan, [b.tensors for b in data.batches("calibration")])
    im = lower_to_integer(qm)
    wide = [r for r in im.report.layers if r.overflows_int32]
    assert wide and all(r.acc_bits > 32 for r in wide)
    assert im.report.integer_only == "partial"
    # computed exactly in int64 all the same
    sim = accuracy(evaluate(qm.module(), data, "evaluation"), data.evaluation.labels)
    got = accuracy(evaluate(im, data, "evaluation"), data.evaluation.labels)
    assert abs(got - sim) <= 0.003


def test_artifact_lowers_to_the_same_integer_model(digits_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, data = digits_data
    qm = _apply(digits_data, "mixed")
    save_artifact(qm, tmp_path / "m.mpq")
    from_file = lower_to_integer(load_artifact(tmp_path / "m.mpq").quantized)
    x = next(iter(data.batches("evaluation"))).tensors
    assert torch.equal(from_file(*x), lower_to_integer(qm)(*x))


def test_a_model_without_ranges_is_refused_with_a_code(digits_data) -> None:  # type: ignore[no-untyped-def]
    qm = _apply(digits_data, "int8")
    bare = QuantizedModel(qm.ir, qm.plan, qm.layers, qm.weights, qm.activations, {})
    with pytest.raises(MPQError) as info:
        lower_to_integer(bare)
    assert info.value.code == "invalid_plan" and "ranges" in info.value.message


def test_minilm_runs_integer_only_with_float_islands(minilm) -> None:  # type: ignore[no-untyped-def]
    ir = import_model(minilm.pt2, trust_uploads=True).ir
    names = [layer.name for layer in inventory(ir).layers]
    calibration = [minilm.batch(0)]
    qm = apply(ir, QuantPlan({k: LayerFormat("int8") for k in names}), calibration)
    im = lower_to_integer(qm)
    rep = im.report
    assert rep.integer_only == "partial"
    assert {"layer_norm", "gelu", "scaled_dot_product_attention"} <= set(rep.islands)
    assert rep.islands["layer_norm"] == 13 and rep.islands["gelu"] == 6
    assert "linear" not in rep.islands and "add" not in rep.islands  # residual adds in integers
    assert all(r.execution == "integer" and not r.overflows_int32 for r in rep.layers)
    x = minilm.batch(32)  # held out from calibration
    with torch.no_grad():
        ref = to_graph_module(ir)(*x)
        sim, got = qm.module()(*x), im(*x)
    assert cosine(got, sim) >= 0.99
    assert abs(cosine(got, ref) - cosine(sim, ref)) <= 0.005
