"""The ``mpq`` command line.

``mpq inspect MODEL [--json]`` imports a .pt2 or .onnx file and prints its
layer inventory; ``mpq ops`` lists the operators MPQ accepts. Errors print as
``error[code]: message`` on stderr with exit status 2 -- never a traceback
(set ``MPQ_DEBUG=1`` to see one for an unexpected internal error).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from engine.errors import FileMissingError, MPQError
from engine.inventory import Inventory

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 2 user error, 1 internal error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except MPQError as exc:
        print(f"error[{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("MPQ_DEBUG") == "1":
            traceback.print_exc()
        print(
            f"error[internal]: unexpected {type(exc).__name__}; this is a bug in MPQ. "
            "Re-run with MPQ_DEBUG=1 and report the traceback.",
            file=sys.stderr,
        )
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpq", description="Mixed-precision quantization.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    inspect = sub.add_parser("inspect", help="print the layer inventory of a .pt2/.onnx model")
    inspect.add_argument("model", type=Path, help="a torch.export .pt2 archive or an .onnx file")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of a table")
    inspect.set_defaults(func=_inspect)
    ops = sub.add_parser("ops", help="list the operators MPQ accepts")
    ops.set_defaults(func=_ops)
    return parser


def _inspect(args: argparse.Namespace) -> int:
    from engine.importers import import_model
    from engine.inventory import inventory

    path: Path = args.model
    if not path.is_file():
        raise FileMissingError(
            f"no such file: {str(path)!r}; give the path of a .pt2 or .onnx file"
        )
    imported = import_model(path, trust_uploads=os.environ.get("MPQ_TRUST_UPLOADS") == "1")
    inv = inventory(imported.ir)
    if args.json:
        out = {"file": str(path), "format": imported.kind, "sha256": imported.sha256}
        print(json.dumps(out | inv.to_json(), indent=2))
    else:
        print(f"{path.name}  ({imported.kind}, sha256 {imported.sha256[:16]}...)")
        print(_table(inv))
    return 0


def _table(inv: Inventory) -> str:
    lines = ["inputs: " + ", ".join(f"{n} {d}{list(s)}" for n, s, d in inv.inputs), ""]
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


def _ops(args: argparse.Namespace) -> int:
    from engine.ops import ALLOWED_OPS, QUANTIZABLE_OPS

    for op in sorted(ALLOWED_OPS):
        print(op + ("  (quantizable)" if op in QUANTIZABLE_OPS else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
