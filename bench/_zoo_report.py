"""The report of ``bench/zoo.py``: the table, grouped failures, unsupported ops, odd figures.

A cell (see ``bench/_zoo_cells.py``) is summarised in the table as
``ir E · bn F/L · w8a8 S · int I full|partial · ort R/U`` (IR vs eager max
relative error; batch norms folded / left; mean cosine to the float IR of the
simulated and the integer-only int8 model; max relative error of MPQ's QDQ
ONNX in onnxruntime to the simulated model, with all graph optimizations / with
none), or as the first failing stage and its error code with a reference
``[n]`` to the failure list.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sized
from typing import Any

from _zoo_cells import Cell

from engine.io.importers.onnx import SUPPORTED_ONNX_OPS
from engine.ir import ALLOWED_OPS

Results = dict[str, dict[str, Cell]]
"""model -> way -> cell."""

IR_TOLERANCE = 1e-4
ORT_COSINE = 0.999
INTEGER_DROP = 0.02
SIMULATED_FLOOR = 0.95


def say(msg: str = "") -> None:
    print(msg, flush=True)


def _e(x: float) -> str:
    return "0" if x == 0 else f"{x:.0e}" if x < 0.01 else f"{x:.2f}"


def summary_cell(cell: Cell, refs: dict[tuple[str, str, str], str] | None = None) -> str:
    """One table cell: the figures measured, and the first failing stage's code."""
    if cell["export"] not in ("ok", "cached"):
        return "export failed"
    errors: dict[str, dict[str, str]] = cell.get("errors", {})

    def fail(stage: str) -> str:
        err = errors[stage]
        ref = refs.get((stage, err["code"], err["message"] + _at(err)), "") if refs else ""
        return f"✗ {stage}: `{err['code']}`{' ' + ref if ref else ''}"

    if "import" in errors:
        return fail("import")
    parts = [f"ir {_e(cell['ir_rel_err'])}" if "ir_rel_err" in cell else fail("ir")]
    if "bn" in cell:
        parts.append(f"bn {cell['bn']['folded']}/{cell['bn']['left']}")
    if "quantize" in errors:
        parts.append(fail("quantize"))
    elif "sim_cosine" in cell:
        parts.append(f"w8a8 {cell['sim_cosine']:.3f}")
        if "integer" in errors:
            parts.append(fail("integer"))
        else:
            parts.append(f"int {cell['int_cosine']:.3f} {cell['integer_only']}")
        if "onnx" in errors:
            parts.append(fail("onnx"))
        else:
            ort = f"{_e(cell['onnx_rel_err'])}/{_e(cell['onnx_unoptimized_rel_err'])}"
            parts.append(f"ort {ort}")
    return " · ".join(parts)


def failure_groups(results: Results) -> list[dict[str, Any]]:
    """Identical (stage, code, message) failures grouped, most frequent first."""
    groups: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for name, cells in results.items():
        for way, cell in cells.items():
            for stage, err in cell.get("errors", {}).items():
                message = _generic(err["message"]) + _at(err)
                groups[(stage, err["code"], message)].append(f"{name}/{way}")
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [
        {"ref": f"[{i + 1}]", "stage": s, "code": c, "message": m, "cells": where}
        for i, ((s, c, m), where) in enumerate(ordered)
    ]


def _at(err: dict[str, str]) -> str:
    return f" (at {err['where']})" if "where" in err else ""


def _generic(message: str) -> str:
    """``message`` with torch's symbol names (``s43``) made equal, so such failures group."""
    return re.sub(r"\bs\d+\b", "sN", message)


def export_failures(results: Results) -> dict[str, list[str]]:
    failed: dict[str, list[str]] = defaultdict(list)
    for name, cells in results.items():
        for way, cell in cells.items():
            if cell["export"] not in ("ok", "cached"):
                failed[cell["export"]].append(f"{name}/{way}")
    return dict(failed)


def unsupported_ops(results: Results) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"aten"|"onnx": {op: {"models": {model: nodes}, "named": bool}}}``: ops not accepted.

    An op counts when it is off the importer's list (``engine.ir.ALLOWED_OPS``,
    ``SUPPORTED_ONNX_OPS``) and no file holding it imported (the ``.pt2``
    importer rewrites some ops, e.g. in-place ones, before checking), or when an
    import error names it. ``named`` says an import error named it; otherwise
    every file holding it failed earlier (a dynamic shape, another op).
    A model's node count is its largest over its files of that kind; ``aten._assert_*``
    checks are left out (the importer drops them).
    """
    seen: dict[str, dict[str, dict[str, Any]]] = {"aten": {}, "onnx": {}}
    accepted: set[str] = set()
    named: set[str] = set()
    for cells in results.values():
        for cell in cells.values():
            err = cell.get("errors", {}).get("import")
            if cell["export"] in ("ok", "cached") and err is None:
                accepted.update(cell["ops"])
            elif err is not None and err["code"] == "unsupported_ops":
                named.update(op for op in cell["ops"] if _names_op(short(err["message"]), op))
    for name, cells in results.items():
        for way, cell in cells.items():
            kind = "aten" if way.startswith("pt2") else "onnx"
            known = ALLOWED_OPS if kind == "aten" else SUPPORTED_ONNX_OPS
            for op, count in cell["ops"].items():
                off_list = op not in known and op not in accepted
                if (off_list or op in named) and not op.startswith("aten._assert_"):
                    entry = seen[kind].setdefault(op, {"models": {}, "named": op in named})
                    entry["models"][name] = max(entry["models"].get(name, 0), count)
    return seen


def _names_op(message: str, op: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(op)}(?!\.?\w)", message) is not None


def short(message: str) -> str:
    """A message without the long list of supported ops that some errors append."""
    return re.sub(r" (Supported: |Supported operators are listed).*", " …", message)


def odd_figures(results: Results) -> dict[str, dict[str, list[str]]]:
    """Figures of cells that ran which point at a bug: check -> model -> ``way: figure``."""
    checks: dict[str, Callable[[Cell], str | None]] = {
        f"IR vs eager max rel err > {IR_TOLERANCE:.0e}": lambda c: (
            f"{c['ir_rel_err']:.1e}" if c.get("ir_rel_err", 0.0) > IR_TOLERANCE else None
        ),
        f"w8a8 simulated cosine < {SIMULATED_FLOOR}": lambda c: (
            f"{c['sim_cosine']:.3f}" if c.get("sim_cosine", 1.0) < SIMULATED_FLOOR else None
        ),
        f"integer-only cosine more than {INTEGER_DROP} below simulated (int / sim)": lambda c: (
            f"{c['int_cosine']:.3f} / {c['sim_cosine']:.3f}"
            if "int_cosine" in c and c["int_cosine"] < c["sim_cosine"] - INTEGER_DROP
            else None
        ),
        "onnxruntime, no graph optimizations, vs simulated: most samples differ (graph "
        "differs; max rel err, samples off)": lambda c: _rows(c, lambda off, n: off > n // 2),
        "onnxruntime, no graph optimizations, vs simulated: a few samples differ (one "
        "rounding step flipped and amplified; max rel err, samples off)": lambda c: _rows(
            c, lambda off, n: 0 < off <= n // 2
        ),
        f"onnxruntime, all optimizations, vs simulated cosine < {ORT_COSINE} (cos / err)": (
            lambda c: (
                f"{c['onnx_cosine']:.4f} / {c['onnx_rel_err']:.2f}"
                if c.get("onnx_cosine", 1.0) < ORT_COSINE
                else None
            )
        ),
    }
    odd: dict[str, dict[str, list[str]]] = {}
    for check, figure in checks.items():
        for name, cells in results.items():
            for way, cell in cells.items():
                value = figure(cell)
                if value is not None:
                    odd.setdefault(check, {}).setdefault(name, []).append(f"{way} {value}")
    return odd


def _rows(cell: Cell, test: Callable[[int, int], bool]) -> str | None:
    if "onnx_unoptimized_rows_off" not in cell:
        return None
    off, n = cell["onnx_unoptimized_rows_off"], cell["rows"]
    return f"{cell['onnx_unoptimized_rel_err']:.1e}, {off}/{n}" if test(off, n) else None


def islands(results: Results) -> dict[str, list[str]]:
    """Float-island op -> the cells whose integer-only model runs it in float."""
    found: dict[str, list[str]] = defaultdict(list)
    for name, cells in results.items():
        for way, c in cells.items():
            for op in c.get("islands", {}):
                found[op].append(f"{name}/{way}")
    return dict(sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def _none(found: Sized) -> None:
    if not found:
        say("- none")


def report(results: Results, ways: list[str]) -> dict[str, Any]:
    groups = failure_groups(results)
    refs = {(g["stage"], g["code"], g["message"]): g["ref"] for g in groups}
    for cells in results.values():  # each cell's own message -> its group's reference
        for cell in cells.values():
            for stage, err in cell.get("errors", {}).items():
                key = (stage, err["code"], _generic(err["message"]) + _at(err))
                refs[(stage, err["code"], err["message"] + _at(err))] = refs[key]
    say("| model | " + " | ".join(ways) + " |")
    say("| --- |" + " --- |" * len(ways))
    for name, cells in results.items():
        row = [summary_cell(cells[w], refs) if w in cells else "" for w in ways]
        say(f"| {name} | " + " | ".join(row) + " |")
    every = [c for per in results.values() for c in per.values()]
    exported = [c for c in every if c["export"] in ("ok", "cached")]
    imported = [c for c in exported if "import" not in c.get("errors", {})]
    close = [c for c in imported if c.get("ir_rel_err", 1.0) <= IR_TOLERANCE]
    ran = [c for c in imported if "onnx_rel_err" in c]
    full = [c for c in imported if c.get("integer_only") == "full"]
    say()
    say(
        f"imported {len(imported)} of {len(exported)} exported files ({len(every)} cells, "
        f"{len(every) - len(exported)} exports failed); IR within 1e-4 of eager: {len(close)}; "
        f"int8 integer-only full: {len(full)}; quantized ONNX ran in onnxruntime: {len(ran)}"
    )
    say()
    say("Failures (stage, code, message; cells):")
    _none(groups)
    for g in groups:
        say(f"{g['ref']} {g['stage']} `{g['code']}`: {short(g['message'])}")
        say(f"    {len(g['cells'])} cells: {', '.join(g['cells'])}")
    say()
    say("Exporter failures (not MPQ's):")
    failed = export_failures(results)
    _none(failed)
    for message, where in failed.items():
        say(f"- {message}\n    {', '.join(where)}")
    ops = unsupported_ops(results)
    for kind, title in (("aten", "ATen ops in .pt2 exports"), ("onnx", "ONNX ops")):
        say()
        say(f"{title} MPQ's importer does not accept (op: nodes, models):")
        _none(ops[kind])
        entries = sorted(ops[kind].items(), key=lambda kv: (-len(kv[1]["models"]), kv[0]))
        for op, entry in entries:
            models = entry["models"]
            tag = "" if entry["named"] else " (not reached: every file failed before)"
            count = f"{sum(models.values())} nodes, {len(models)} models"
            say(f"- {op}: {count} ({', '.join(models)}){tag}")
    odd = odd_figures(results)
    say()
    say("Figures to look at (cells that ran):")
    _none(odd)
    for check, per_model in odd.items():
        say(f"- {check}:")
        for name, figures in per_model.items():
            say(f"    {name}: {', '.join(figures)}")
    found = islands(results)
    say()
    say("Float islands of the integer-only models (op: cells):")
    _none(found)
    for op, where in found.items():
        by_way = Counter(w.split("/")[1] for w in where)
        say(f"- {op}: {len(where)} cells ({', '.join(f'{w} {n}' for w, n in by_way.items())})")
    return {
        "failures": groups,
        "export_failures": failed,
        "unsupported_ops": ops,
        "odd_figures": odd,
        "islands": found,
    }
