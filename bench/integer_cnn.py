"""Integer-only execution against simulated quantization on real CNNs: top-1 agreement.

Run: ``.venv/bin/python bench/integer_cnn.py [--only efficientnet|digits] [--onnx]
[--plans int8,mixed] [--calibration minmax,percentile,mse] [--eval N]``

For each model, plan and activation calibration: the float model, the simulated model
(``engine.apply``: fake-quant weights and activations) and its integer-only lowering
(``engine.lower_to_integer``) score the evaluation images; a row prints the simulated and
the integer-only top-1 agreement with the float model, their difference in points, the
share of images on which the two quantized models' top-1 differ, whether the lowering is
``full`` (no float island, every accumulator within int32) and the seconds each part took.

Models and data:

* EfficientNet-Lite2 (``examples/efficientnet.py``: the pretrained ImageNet CNN from its
  PyPI wheels, ReLU6, depthwise convs, TF "same" padding as ``ZeroPad2d``): 64 calibration
  and 128 evaluation crops of real photos, written once to ``bench/out/efficientnet``
  (git-ignored). Labels are the fp32 top-1, so accuracy is agreement. ``--onnx`` adds the
  ``torch.onnx.export`` of the same network (batch norms folded by the exporter).
* digits (``examples/digits.py``): the trained CNN, 256 calibration and 540 held-out
  images; agreement with the float model and accuracy against the true labels.

Plans (every layer's activations 8-bit):

* ``int8``: int8 weights, per channel, max scales;
* ``mixed``: EfficientNet: the 1x1 convs ``int4`` (MSE scales), the depthwise and stem
  convs ``int8``, the classifier ``int6`` with 8 outliers; digits: int8, int4 (GPTQ, MSE),
  cb16, int6 with 3 outliers.

Threads: ``torch.set_num_threads(2)``. The integer model computes its convolutions in
float64 (exact integers), so it is slower than the float model; that is not a figure of
merit here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import import_model
from engine.data import Dataset, agreement, evaluate, fit_batch, load_dataset
from engine.ir import IRModel, to_graph_module
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import WeightCache, apply, inventory
from engine.transforms.integer import lower_to_integer

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2
OUT = ROOT / "bench" / "out"


@dataclass
class Model:
    """One model, its data, and the float outputs on the evaluation split."""

    name: str
    ir: IRModel
    data: Dataset
    reference: torch.Tensor
    mixed: dict[str, LayerFormat]


def _efficientnet(onnx: bool, n_eval: int | None) -> list[Model]:
    out = OUT / "efficientnet"
    npz = out / "efficientnet_lite2.npz"
    if not npz.exists() or (onnx and not (out / "efficientnet_lite2.onnx").exists()):
        cmd = [sys.executable, str(ROOT / "examples" / "efficientnet.py"), "--out", str(out)]
        subprocess.run([*cmd, "--calib", "64", "--eval", "128", "--onnx"], check=True)
    files = [out / "efficientnet_lite2.pt2"] + ([out / "efficientnet_lite2.onnx"] if onnx else [])
    return [
        _load(f"efficientnet-lite2 ({f.suffix[1:]})", f, npz, n_eval, _effnet_mixed) for f in files
    ]


def _effnet_mixed(ir: IRModel) -> dict[str, LayerFormat]:
    plan = {}
    for layer in inventory(ir).layers:
        shape = layer.weight_shape
        if len(shape) == 2:
            plan[layer.name] = LayerFormat("int6", outliers=8)
        elif tuple(shape[2:]) == (1, 1):
            plan[layer.name] = LayerFormat("int4", scale="mse")
        else:
            plan[layer.name] = LayerFormat("int8")
    return plan


def _digits(n_eval: int | None) -> list[Model]:
    out = OUT / "digits"
    if not (out / "digits.npz").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "digits.py"), "--out", str(out)], check=True
        )

    def mixed(ir: IRModel) -> dict[str, LayerFormat]:
        return {
            "features.0": LayerFormat("int8"),
            "features.4": LayerFormat("int4", rounding="gptq", scale="mse"),
            "features.7": LayerFormat("cb16"),
            "classifier": LayerFormat("int6", outliers=3),
        }

    return [_load("digits", out / "digits.pt2", out / "digits.npz", n_eval, mixed)]


def _load(name: str, path: Path, npz: Path, n_eval: int | None, mixed) -> Model:  # type: ignore[no-untyped-def]
    ir = import_model(path, trust_uploads=True).ir  # our own file
    ir, data = fit_batch(ir, load_dataset(npz, ir.inputs))
    if n_eval is not None:
        keep = torch.arange(min(n_eval, data.evaluation.num_samples))
        data = replace(data, evaluation=data.evaluation.select(keep))
    reference = evaluate(to_graph_module(ir), data, "evaluation")
    return Model(name, ir, data, reference, mixed(ir))


def _row(model: Model, plan_name: str, plan: QuantPlan, cache: WeightCache) -> str:
    calibration = [b.tensors for b in model.data.batches("calibration")]
    t0 = time.perf_counter()
    qm = apply(model.ir, plan, calibration, cache=cache)
    t1 = time.perf_counter()
    sim = evaluate(qm.module(), model.data, "evaluation")
    t2 = time.perf_counter()
    im = lower_to_integer(qm)
    got = evaluate(im, model.data, "evaluation")
    t3 = time.perf_counter()
    ref, n = model.reference, model.reference.shape[0]
    a_sim, a_int = agreement(sim, ref), agreement(got, ref)
    differ = int((sim.argmax(-1) != got.argmax(-1)).sum())
    labels = model.data.evaluation.labels
    acc = ""
    if model.name == "digits" and labels is not None:
        acc = f" (accuracy {float((got.argmax(-1) == labels).float().mean()):.4f})"
    return (
        f"| {model.name} | {plan_name} a8 {plan.calibration} | {n} | {a_sim:.4f} | "
        f"{a_int:.4f}{acc} | {100 * (a_int - a_sim):+.2f} | {differ}/{n} | "
        f"{im.report.integer_only} | {t1 - t0:.0f} / {t2 - t1:.0f} / {t3 - t2:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("efficientnet", "digits"))
    parser.add_argument("--onnx", action="store_true", help="also the ONNX EfficientNet")
    parser.add_argument("--plans", default="int8,mixed")
    parser.add_argument("--calibration", default="minmax")
    parser.add_argument("--eval", type=int, default=None, help="score the first N images")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    models: list[Model] = []
    if args.only in (None, "efficientnet"):
        models += _efficientnet(args.onnx, args.eval)
    if args.only in (None, "digits"):
        models += _digits(args.eval)
    print(f"torch {torch.__version__}, {THREADS} threads")
    print(
        "| model | plan | images | simulated | integer-only | int - sim (pt) | top-1 differ |"
        " lowering | apply / sim / int s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for model in models:
        cache = WeightCache()
        names = [layer.name for layer in inventory(model.ir).layers]
        for plan_name in args.plans.split(","):
            for method in args.calibration.split(","):
                layers = (
                    {k: LayerFormat("int8") for k in names} if plan_name == "int8" else model.mixed
                )
                plan = QuantPlan(layers, calibration=method)  # type: ignore[arg-type]
                print(_row(model, plan_name, plan, cache), flush=True)


if __name__ == "__main__":
    main()
