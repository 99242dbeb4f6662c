"""One cell of ``bench/zoo.py``: an exported file through MPQ's import, check, quantize, export.

Stages, each catching its own exception (an :class:`~engine.errors.MPQError`
is recorded as its ``code`` and ``message``; anything else as code ``crash``
and message ``TypeName: msg``); a stage runs only when the ones it needs did:

1. ``import``: :func:`engine.io.importers.import_model` (the real importer: the
   ``.pt2`` loader runs in its sandbox, ONNX through MPQ's own reader).
2. ``ir``: :func:`engine.ir.to_graph_module` of the IR against the eager model
   on the same seeded inputs at the IR's input batch: max relative error
   ``max|ir - eager| / max|eager|``.
3. ``bn``: :func:`engine.transforms.fold_batch_norm`: batch norms folded / left.
4. ``quantize``: a data file (``<way>.npz``: ``N_EVAL`` evaluation and
   ``N_CALIB`` ``calib/`` samples, one array per IR input, by name) read by
   :func:`engine.data.load_dataset`; every layer int8 weights + a8 activations
   (``LayerFormat()``, what ``mpq eval --integer-only`` uses for a float model)
   by :func:`engine.apply`; mean cosine of the simulated model's outputs to the float IR's.
5. ``integer``: :func:`engine.transforms.integer.lower_to_integer`: mean cosine of the
   integer-only outputs to the float IR's, ``full``/``partial``, float islands.
6. ``onnx``: :func:`engine.io.export.export_onnx` of the quantized model run in
   onnxruntime on the evaluation samples: max relative error and mean cosine to
   MPQ's simulated outputs, with all graph optimizations (what users run: ORT
   fuses Q/DQ into integer kernels that round differently at ties) and with none
   (``ORT_DISABLE_ALL``: the graph as written), and how many samples differ by
   more than ``ROW_TOLERANCE`` there (all of them: the graph differs; a few: values
   that summation order moved across a rounding boundary, one step amplified).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _zoo_build import ZooModel

from engine.data import CALIB_PREFIX, Dataset, cosine, evaluate, load_dataset
from engine.errors import MPQError
from engine.io.export import export_onnx
from engine.io.importers import import_model
from engine.ir import IRModel, to_graph_module
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, fold_batch_norm, inventory
from engine.transforms.integer import lower_to_integer

_ROOT = str(Path(__file__).resolve().parent.parent) + "/"
N_EVAL = 8
N_CALIB = 8
ROW_TOLERANCE = 1e-4

Cell = dict[str, Any]


class _Failed(Exception):
    """A stage failed; its error is already in the cell."""


def error_of(exc: BaseException) -> dict[str, str]:
    """``{"code", "message"}``: an MPQError's own, else code ``crash`` and ``TypeName: msg``.

    A crash also gets ``where``: the innermost frame in MPQ's own code (``engine/...py:line``).
    """
    if isinstance(exc, MPQError):
        return {"code": exc.code, "message": exc.message}
    text = (str(exc).strip().splitlines() or [""])[0][:500]
    error = {"code": "crash", "message": f"{type(exc).__name__}: {text}"}
    ours = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(_ROOT)]
    if ours:
        frame = ours[-1]
        error["where"] = f"{frame.filename.removeprefix(_ROOT)}:{frame.lineno} in {frame.name}"
    return error


@contextmanager
def _stage(cell: Cell, name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    except Exception as exc:  # every failure is a finding of the benchmark
        cell["errors"][name] = error_of(exc)
        raise _Failed(name) from exc
    finally:
        cell["seconds"][name] = round(time.perf_counter() - t0, 2)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max|a - b| / max|b|`` in float64 (shapes must match)."""
    if a.shape != b.shape:
        raise ValueError(f"output shape {tuple(a.shape)} differs from {tuple(b.shape)}")
    a64, b64 = a.detach().to(torch.float64), b.detach().to(torch.float64)
    return float((a64 - b64).abs().max() / b64.abs().max().clamp_min(1e-30))


def rows_off(a: torch.Tensor, b: torch.Tensor, tolerance: float) -> int:
    """Rows (samples) whose ``max|a - b|`` exceeds ``tolerance * max|b|``.

    A graph that computes something else moves every row; a value that float
    summation order pushes across a rounding boundary moves the few rows it is in.
    """
    diff = (a.detach().to(torch.float64) - b.detach().to(torch.float64)).abs()
    bound = tolerance * float(b.detach().abs().max())
    return int((diff.reshape(len(diff), -1).max(dim=1).values > bound).sum())


def _first(out: Any) -> torch.Tensor:
    first = out[0] if isinstance(out, tuple | list) else out
    if not isinstance(first, torch.Tensor):
        raise TypeError(f"the IR module returned {type(first).__name__}, not a tensor")
    return first


def _by_ir_names(ir: IRModel, model: ZooModel, tensors: tuple[torch.Tensor, ...]) -> list[Any]:
    """``tensors`` (``model.inputs`` order) in the IR's input order: by name, else by position."""
    names = [spec.name for spec in ir.inputs]
    if len(names) != len(tensors):
        raise ValueError(f"the IR has inputs {names}; the model takes {list(model.inputs)}")
    if set(names) == set(model.inputs):
        return [tensors[model.inputs.index(n)] for n in names]
    return list(tensors)


def write_data(path: Path, ir: IRModel, model: ZooModel) -> None:
    """``path``: N_EVAL evaluation + N_CALIB calibration samples per IR input (engine/data/)."""
    arrays = _by_ir_names(ir, model, model.example(N_EVAL + N_CALIB))
    data: dict[str, np.ndarray] = {}
    for spec, t in zip(ir.inputs, arrays, strict=True):
        data[spec.name] = t[:N_EVAL].numpy()
        data[CALIB_PREFIX + spec.name] = t[N_EVAL:].numpy()
    np.savez(path, **data)  # type: ignore[arg-type]


def _ort(data: bytes, dataset: Dataset, *, optimize: bool) -> torch.Tensor:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    outs = []
    for batch in dataset.batches("evaluation"):
        feeds = {s.name: t.numpy() for s, t in zip(dataset.inputs, batch.tensors, strict=True)}
        outs.append(batch.unpad(torch.from_numpy(session.run(None, feeds)[0])))
    return torch.cat(outs)


def run_cell(
    path: Path, model: ZooModel, eager: Callable[[int], torch.Tensor], *, quant: bool
) -> Cell:
    """Every stage of one exported file; the cell records figures, errors and seconds."""
    cell: Cell = {"errors": {}, "seconds": {}}
    try:
        with _stage(cell, "import"):
            ir = import_model(path).ir
        cell["inputs"] = [[s.name, list(s.shape), s.dtype] for s in ir.inputs]
        cell["nodes"] = len(ir.nodes)
        _check_ir(cell, ir, model, eager)
        if quant:
            _quantize(cell, ir, model, path.with_suffix(".npz"))
    except _Failed:
        pass
    return cell


def _check_ir(
    cell: Cell, ir: IRModel, model: ZooModel, eager: Callable[[int], torch.Tensor]
) -> None:
    try:
        with _stage(cell, "ir"):
            batch = ir.inputs[0].shape[0]
            args = _by_ir_names(ir, model, model.example(batch))
            with torch.no_grad():
                got = _first(to_graph_module(ir)(*args))
            cell["ir_rel_err"] = rel_err(got, eager(batch))
    except _Failed:
        pass  # the other stages do not need it
    try:
        with _stage(cell, "bn"):
            report = fold_batch_norm(ir)[1]
            cell["bn"] = {"folded": len(report.folded), "left": len(report.unfolded)}
    except _Failed:
        pass


def _quantize(cell: Cell, ir: IRModel, model: ZooModel, data_path: Path) -> None:
    with _stage(cell, "quantize"):
        write_data(data_path, ir, model)
        data = load_dataset(data_path, ir.inputs)
        layers = [layer.name for layer in inventory(ir).layers]
        cell["layers"] = len(layers)
        qm = apply(
            ir,
            QuantPlan.uniform(layers, LayerFormat()),
            [b.tensors for b in data.batches("calibration")],
        )
        ref = evaluate(to_graph_module(ir), data, "evaluation")
        simulated = evaluate(qm.module(), data, "evaluation")
        cell["sim_cosine"] = cosine(simulated, ref)
    try:
        with _stage(cell, "integer"):
            integer = lower_to_integer(qm)
            report = integer.report
            cell["integer_only"] = report.integer_only
            cell["islands"] = dict(sorted(report.islands.items()))
            cell["int_cosine"] = cosine(evaluate(integer, data, "evaluation"), ref)
    except _Failed:
        pass
    with _stage(cell, "onnx"):
        exported = export_onnx(qm)
        cell["onnx_bytes"] = exported.report.file_bytes
        ort_out = _ort(exported.data, data, optimize=True)
        cell["onnx_rel_err"] = rel_err(ort_out, simulated)
        cell["onnx_cosine"] = cosine(ort_out, simulated)
        plain = _ort(exported.data, data, optimize=False)
        cell["onnx_unoptimized_rel_err"] = rel_err(plain, simulated)
        cell["onnx_unoptimized_rows_off"] = rows_off(plain, simulated, ROW_TOLERANCE)
        cell["rows"] = len(simulated)
