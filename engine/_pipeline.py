"""The engine's top-level jobs: quantize a model file, evaluate a model or artifact file.

``quantize_file`` imports a model (.pt2/.onnx), loads a dataset against its
inputs, applies a plan with calibration from the dataset's calibration split,
measures the float and quantized model on the evaluation split, and writes
``model.mpq``. The metric it reports is measured on the model rebuilt from
the written file, so it is exactly what ``mpq eval model.mpq`` gives.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from engine.data import METRICS, Dataset, check_metric, evaluate, fit_batch, load_dataset
from engine.errors import MetricNotApplicableError, MPQError
from engine.io import load_artifact, predict_model_payload, save_artifact
from engine.io.importers import import_model
from engine.ir import IRModel, to_graph_module
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, inventory
from engine.transforms.integer import lower_to_integer

__all__ = ["EvalReport", "QuantizeReport", "evaluate_file", "pick_metric", "quantize_file"]


@dataclass(frozen=True)
class QuantizeReport:
    """What ``mpq quantize`` reports (``--json`` prints this dict)."""

    metric: str
    float_metric: float
    quantized_metric: float
    float_bytes: int
    payload_bytes: int
    predicted_payload_bytes: int
    file_bytes: int
    compression: float
    evaluation_samples: int
    calibration_samples: int
    plan: dict[str, Any]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalReport:
    """What ``mpq eval`` reports.

    With ``--integer-only``, ``value`` is the integer-only model's metric,
    ``simulated_value`` the simulated model's on the same data, and ``integer``
    the lowering report (full/partial, float islands, accumulator bounds).
    """

    metric: str
    value: float
    samples: int
    kind: str
    simulated_value: float | None = None
    integer: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def quantize_file(
    model_path: Path,
    data_path: Path,
    plan: QuantPlan | LayerFormat,
    out: Path,
    *,
    metric: str | None = None,
    trust_uploads: bool = False,
) -> QuantizeReport:
    """Quantize ``model_path`` with ``plan`` (or one format for every layer) into ``out``."""
    out = Path(out)
    imported = import_model(model_path, trust_uploads=trust_uploads)
    ir, data = fit_batch(imported.ir, load_dataset(data_path, imported.ir.inputs))
    metric = pick_metric(metric, data)
    if isinstance(plan, LayerFormat):
        plan = QuantPlan.uniform([layer.name for layer in inventory(ir).layers], plan)
    calibration = [b.tensors for b in data.batches("calibration")]
    qm = apply(ir, plan, calibration)
    reference = evaluate(to_graph_module(ir), data, "evaluation")
    float_value = _score(metric, reference, reference, data)
    partial = out.with_name(out.name + ".partial")  # no half-written model.mpq on failure
    try:
        save_artifact(qm, partial, source_sha256=imported.sha256)
        artifact = load_artifact(partial)
        value = _score(metric, evaluate(artifact.module(), data, "evaluation"), reference, data)
        # the rewrite only adds the metric to the header: the tensors (payload) are unchanged
        file_bytes = save_artifact(
            qm, partial, source_sha256=imported.sha256, metrics={metric: value}
        )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    float_bytes = sum(t.numel() * t.element_size() for t in ir.tensors.values())
    return QuantizeReport(
        metric=metric,
        float_metric=float_value,
        quantized_metric=value,
        float_bytes=float_bytes,
        payload_bytes=artifact.payload_bytes,
        predicted_payload_bytes=predict_model_payload(qm),
        file_bytes=file_bytes,
        compression=float_bytes / file_bytes,
        evaluation_samples=data.evaluation.num_samples,
        calibration_samples=data.calibration.num_samples,
        plan=plan.to_json(),
        notes=data.notes,
    )


def evaluate_file(
    path: Path,
    data_path: Path,
    *,
    metric: str | None = None,
    reference: Path | None = None,
    integer_only: bool = False,
    trust_uploads: bool = False,
) -> EvalReport:
    """Evaluate a model (.pt2/.onnx) or an artifact (model.mpq) on the evaluation split.

    Metrics against the float model (agreement, top5, kl, cosine, nmse, sqnr) take
    the float model from ``reference`` (for an artifact) or the model itself.
    ``integer_only`` runs the artifact's integer-only lowering
    (:func:`engine.transforms.integer.lower_to_integer`); a float model is first quantized
    with int8 weights and 8-bit activations (calibration split), and a note says so.
    """
    ir, kind = _load_any(path, trust_uploads)
    # Only a float model run integer-only is calibrated here: otherwise every sample scores.
    calibrates = integer_only and kind != "mpq"
    dataset = load_dataset(data_path, ir.inputs, hold_out_calibration=calibrates)
    ir, data = fit_batch(ir, dataset)
    metric = pick_metric(metric, data)
    if not METRICS[metric].needs_labels and kind == "mpq" and reference is None:
        raise MPQError(
            f"metric {metric!r} compares with the float model: pass it with --reference MODEL"
        )
    ref_outputs = None  # the float model's outputs, where the metric compares with them
    if not METRICS[metric].needs_labels:
        if reference is not None:
            ref_ir = _at(_load_any(reference, trust_uploads)[0], data)
            ref_outputs = evaluate(to_graph_module(ref_ir), data, "evaluation")
        elif integer_only and kind != "mpq":
            ref_outputs = evaluate(to_graph_module(ir), data, "evaluation")
    samples = data.evaluation.num_samples
    if not integer_only:
        outputs = evaluate(to_graph_module(ir), data, "evaluation")
        ref = ref_outputs if ref_outputs is not None else outputs
        return EvalReport(
            metric, _score(metric, outputs, ref, data), samples, kind, notes=data.notes
        )
    notes: tuple[str, ...] = data.notes
    if kind == "mpq":
        qm = load_artifact(path).quantized
        qm = replace(qm, ir=_at(qm.ir, data))
    else:
        plan = QuantPlan.uniform([layer.name for layer in inventory(ir).layers], LayerFormat())
        qm = apply(ir, plan, [b.tensors for b in data.batches("calibration")])
        notes += (
            "a float model: quantized with int8 weights and 8-bit activations (calibration "
            "split) before lowering; use mpq quantize for another plan",
        )
    simulated = evaluate(qm.module(), data, "evaluation")
    integer_model = lower_to_integer(qm)
    outputs = evaluate(integer_model, data, "evaluation")
    ref = ref_outputs if ref_outputs is not None else outputs
    return EvalReport(
        metric,
        _score(metric, outputs, ref, data),
        samples,
        kind,
        simulated_value=_score(metric, simulated, ref, data),
        integer=integer_model.report.to_json(),
        notes=notes,
    )


def _at(ir: IRModel, data: Dataset) -> IRModel:
    """``ir`` at the batch ``data`` is batched in (when it runs at any batch)."""
    return ir.at_batch(data.batch_size) if ir.batch is not None else ir


def _load_any(path: Path, trust_uploads: bool) -> tuple[IRModel, str]:
    if _is_artifact(path):
        return load_artifact(path).ir, "mpq"
    imported = import_model(path, trust_uploads=trust_uploads)
    return imported.ir, imported.kind


def _is_artifact(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(8 + 4096)
    return len(head) > 8 and b'"format":"mpq-artifact"' in head.replace(b" ", b"")


def pick_metric(metric: str | None, data: Dataset) -> str:
    """``metric``, or the default (accuracy with labels, else cosine); checked against the data.

    Raises:
        MPQError: an unknown metric; MetricNotApplicableError: a label metric without labels.
    """
    has_labels = data.evaluation.labels is not None
    metric = metric or ("accuracy" if has_labels else "cosine")
    if metric not in METRICS:
        raise MPQError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if METRICS[metric].needs_labels and not has_labels:
        raise MetricNotApplicableError(
            f"metric {metric!r} needs a 'labels' array in the data file; add one or use "
            "--metric agreement, top5 or kl (against the float model), or cosine"
        )
    return metric


def _score(metric: str, out: torch.Tensor, ref: torch.Tensor, data: Dataset) -> float:
    check_metric(metric, out, has_labels=data.evaluation.labels is not None)
    info = METRICS[metric]
    fn: Callable[[torch.Tensor, torch.Tensor], float] = info.fn
    if info.needs_labels:
        assert data.evaluation.labels is not None
        return fn(out, data.evaluation.labels)
    return fn(out, ref)
