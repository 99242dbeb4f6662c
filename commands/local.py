"""``mpq inspect``, ``mpq quantize``, ``mpq eval`` and ``mpq ops``: the engine on model files.

``mpq inspect MODEL [--json]`` imports a .pt2 or .onnx file and prints its layer
inventory; ``mpq quantize MODEL --data DATA (--plan P | --uniform FMT) --out model.mpq``
applies a plan and writes the artifact; ``mpq eval MODEL_OR_MPQ --data DATA`` measures a
model or artifact; ``mpq ops`` lists the operators MPQ accepts. All run in this process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from engine.errors import FileMissingError, InvalidPlanError
from engine.transforms import Inventory
from service.settings import get_settings

__all__ = ["add_local_commands"]

METRIC_NAMES = ("accuracy", "agreement", "top5", "kl", "cosine", "nmse", "sqnr")
"""engine.data.METRICS by name, spelled out so ``mpq --help`` need not import torch."""


def add_local_commands(sub: Any) -> None:
    """Register ``inspect``, ``quantize``, ``eval`` and ``ops`` on the ``mpq`` subparsers."""
    inspect = sub.add_parser("inspect", help="print the layer inventory of a .pt2/.onnx model")
    inspect.add_argument("model", type=Path, help="a torch.export .pt2 archive or an .onnx file")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(func=_inspect)
    quantize = sub.add_parser("quantize", help="quantize a model with a plan into model.mpq")
    quantize.add_argument("model", type=Path, help="a .pt2 or .onnx model")
    quantize.add_argument("--data", type=Path, required=True, help=".npz or .safetensors data")
    how = quantize.add_mutually_exclusive_group(required=True)
    how.add_argument("--plan", type=Path, help="a plan JSON file (layer -> format)")
    how.add_argument("--uniform", metavar="FORMAT", help="one weight format for every layer")
    quantize.add_argument("--rounding", choices=["nearest", "gptq"], default="nearest")
    quantize.add_argument("--scale", choices=["max", "mse"], default="max")
    quantize.add_argument(
        "--bias-correction",
        action="store_true",
        help="correct each layer's bias for the mean output shift of weight rounding",
    )
    quantize.add_argument("--activation", default="a8", help="a4, a8, a16 or float")
    quantize.add_argument("--metric", choices=sorted(METRIC_NAMES))
    quantize.add_argument("--out", type=Path, required=True, help="where to write model.mpq")
    quantize.add_argument("--json", action="store_true", help="print the report as JSON")
    quantize.set_defaults(func=_quantize)
    ev = sub.add_parser("eval", help="evaluate a model or a model.mpq on a dataset")
    ev.add_argument("model", type=Path, help="a .pt2, .onnx or model.mpq file")
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--metric", choices=sorted(METRIC_NAMES))
    ev.add_argument("--reference", type=Path, help="the float model, for metrics against it")
    ev.add_argument(
        "--integer-only",
        action="store_true",
        help="run integer-only execution (a float model is quantized w8a8 first)",
    )
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=_eval)
    ops = sub.add_parser("ops", help="list the operators MPQ accepts")
    ops.set_defaults(func=_ops)


def _inspect(args: argparse.Namespace) -> int:
    from engine.io.importers import import_model
    from engine.transforms import inventory

    path: Path = args.model
    if not path.is_file():
        raise FileMissingError(
            f"no such file: {str(path)!r}; give the path of a .pt2 or .onnx file"
        )
    imported = import_model(path, trust_uploads=get_settings().trust_uploads)
    inv = inventory(imported.ir)
    if args.json:
        out = {"file": str(path), "format": imported.kind, "sha256": imported.sha256}
        print(json.dumps(out | inv.to_json(), indent=2))
    else:
        print(f"{path.name}  ({imported.kind}, sha256 {imported.sha256[:16]}...)")
        print(_table(inv))
    return 0


def _table(inv: Inventory) -> str:
    def shape(s: tuple[int, ...]) -> str:
        dims = ["N", *map(str, s[1:])] if inv.fixed_batch is None and s else map(str, s)
        return "[" + ", ".join(dims) + "]"

    batch = "any batch N" if inv.fixed_batch is None else f"a fixed batch of {inv.fixed_batch}"
    lines = [
        "inputs: " + ", ".join(f"{n} {d}{shape(s)}" for n, s, d in inv.inputs) + f" ({batch})",
        "",
    ]
    head = ("layer", "kind", "weight shape", "params", "MACs", "BN")
    rows = [
        (
            x.name,
            x.kind,
            "x".join(map(str, x.weight_shape)),
            f"{x.params:,}",
            f"{x.macs:,}",
            "folds" if x.bn_follows else "",
        )
        for x in inv.layers
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        cells = [
            c.rjust(w) if i in (3, 4) else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines += [
        "",
        f"{len(inv.layers)} quantizable layers, {inv.layer_params:,} of {inv.total_params:,} "
        f"params; {inv.float_bytes:,} bytes of tensors; {inv.total_macs:,} MACs per example input",
        "other ops: " + (", ".join(f"{k} x{v}" for k, v in inv.other_ops.items()) or "none"),
    ]
    if inv.unfoldable_bn:
        lines.append("batch norms left unfolded:")
        lines += [f"  {k}: {v}" for k, v in inv.unfoldable_bn.items()]
    return "\n".join(lines)


def _quantize(args: argparse.Namespace) -> int:
    from engine import quantize_file
    from engine.quant import LayerFormat, QuantPlan

    for path in (args.model, args.data, args.plan):
        if path is not None and not path.is_file():
            raise FileMissingError(f"no such file: {str(path)!r}")
    if args.plan is not None:
        try:
            doc = json.loads(args.plan.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidPlanError(f"{str(args.plan)!r} is not JSON: {exc}") from None
        plan: QuantPlan | LayerFormat = QuantPlan.from_json(doc)
    else:
        plan = LayerFormat(
            args.uniform,
            args.activation,
            args.rounding,
            args.scale,
            bias_correction=args.bias_correction,
        )
    report = quantize_file(
        args.model,
        args.data,
        plan,
        args.out,
        metric=args.metric,
        trust_uploads=get_settings().trust_uploads,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    r = report
    print(
        f"wrote {args.out}: {r.file_bytes:,} bytes ({r.payload_bytes:,} of tensors), "
        f"{r.compression:.1f}x smaller than the float model's {r.float_bytes:,} bytes"
    )
    print(
        f"{r.metric}: float {r.float_metric:.4f} -> quantized {r.quantized_metric:.4f} "
        f"on {r.evaluation_samples} evaluation samples ({r.calibration_samples} calibration)"
    )
    for note in r.notes:
        print(f"note: {note}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from engine import evaluate_file

    for path in (args.model, args.data, args.reference):
        if path is not None and not path.is_file():
            raise FileMissingError(f"no such file: {str(path)!r}")
    report = evaluate_file(
        args.model,
        args.data,
        metric=args.metric,
        reference=args.reference,
        integer_only=args.integer_only,
        trust_uploads=get_settings().trust_uploads,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    how = f"{report.kind}, integer-only" if report.integer else report.kind
    print(f"{report.metric}: {report.value:.6f} on {report.samples} samples ({how})")
    if report.integer is not None:
        print(f"simulated: {report.simulated_value:.6f}")
        islands = report.integer["islands"]
        listed = ", ".join(f"{op} x{k}" for op, k in sorted(islands.items())) or "none"
        print(f"integer_only: {report.integer['integer_only']}; float islands: {listed}")
        wide = [r["name"] for r in report.integer["layers"] if r["overflows_int32"]]
        if wide:
            print(f"accumulators beyond int32 (computed exactly in int64): {', '.join(wide)}")
    for note in report.notes:
        print(f"note: {note}")
    return 0


def _ops(args: argparse.Namespace) -> int:
    from engine.ir import ALLOWED_OPS, QUANTIZABLE_OPS

    for op in sorted(ALLOWED_OPS):
        print(op + ("  (quantizable)" if op in QUANTIZABLE_OPS else ""))
    return 0
