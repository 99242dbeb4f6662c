"""The packed artifact ``model.mpq``: one data-only safetensors file.

Contents:

- for each quantized layer weight ``W`` (names from the IR): the tensors its
  format's scheme packs (:mod:`engine.quant.formats`), named ``W`` + a suffix:
  ``W.codes`` -- uint8, codes bit-packed densely (:mod:`engine.quant._packing`;
  signed affine codes offset by ``2^(b-1)``; ``int16`` codes stored as int16);
  ``W.scale`` -- float32 scales (``[C_out]`` or ``[C_out, groups]``) for
  uniform formats, or ``W.codebook`` -- float16 centroids for codebooks;
  ``fp16`` layers store ``W`` as float16, ``fp32`` layers as it is; and
  ``W.outlier_index`` (int32, flat) and ``W.outlier_value`` (float16) when the
  layer keeps outliers;
- every other tensor of the model as it is (biases, norms, fp32 layers);
- header metadata ``format = "mpq-artifact"`` and ``manifest``: JSON with the
  artifact version, the simulated IR graph (activation qparams are the plain
  arguments of its fake-quant nodes), the plan, per-layer records, the observed
  range of every float tensor (:mod:`engine.quant._observe`, for integer-only
  execution), the source model's sha256 and the metrics measured.

The *payload* is the tensor data; :func:`predict_payload_bytes` computes it from
the plan and weight shapes alone, and equals the file's tensor bytes. The
file's size adds the JSON header. :func:`load_artifact` rebuilds the simulated
model from this file alone, bit-identical to the model it was packed from, and
the :class:`~engine.transforms.QuantizedModel` (codes, scales, codebooks, activation
qparams, ranges) that integer lowering and ONNX export start from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx

from engine.errors import CorruptFileError
from engine.ir import IRModel, Ref, read_safetensors, write_safetensors
from engine.quant import (
    AffineQParams,
    LayerFormat,
    QuantizedWeight,
    QuantPlan,
    scheme_for,
    stored_parts,
)
from engine.transforms import (
    FAKE_QUANT_OP,
    QuantizedModel,
    deterministic_module,
    inventory,
    weight_is_transposed,
)

__all__ = [
    "ARTIFACT_VERSION",
    "LoadedArtifact",
    "load_artifact",
    "predict_model_payload",
    "predict_payload_bytes",
    "save_artifact",
]

ARTIFACT_VERSION = 1
_OUTLIER_PARTS = (".outlier_index", ".outlier_value")


@dataclass(frozen=True, eq=False)
class LoadedArtifact:
    """A model rebuilt from ``model.mpq``."""

    ir: IRModel
    plan: QuantPlan
    manifest: dict[str, Any]
    payload_bytes: int
    file_bytes: int
    quantized: QuantizedModel

    def module(self) -> fx.GraphModule:
        """The runnable simulated model, the same at any thread count (see QuantizedModel)."""
        return deterministic_module(self.ir)


def predict_payload_bytes(
    plan: QuantPlan, weights: Mapping[str, tuple[int, ...]], other_bytes: int
) -> int:
    """Tensor bytes of the artifact, from the plan and weight shapes alone.

    Args:
        plan: the plan.
        weights: layer name -> weight shape (output channel first).
        other_bytes: bytes of every tensor that is not a layer weight.
    """
    return other_bytes + sum(
        _layer_bytes(plan.layers[name], shape) for name, shape in weights.items()
    )


def predict_model_payload(qm: QuantizedModel) -> int:
    """:func:`predict_payload_bytes` for a quantized model (its plan and tensor shapes)."""
    weights = {layer.weight for layer in qm.layers}
    other = sum(t.numel() * t.element_size() for k, t in qm.ir.tensors.items() if k not in weights)
    shapes = {layer.name: tuple(qm.weights[layer.name].values.shape) for layer in qm.layers}
    return predict_payload_bytes(qm.plan, shapes, other)


def save_artifact(
    qm: QuantizedModel,
    path: Path,
    *,
    source_sha256: str = "",
    metrics: Mapping[str, float] | None = None,
) -> int:
    """Write ``qm`` as ``model.mpq``; return the file size in bytes."""
    tensors: dict[str, torch.Tensor] = {}
    layer_records = []
    weight_names = {layer.weight for layer in qm.layers}
    for name, t in qm.ir.tensors.items():
        if name not in weight_names:
            tensors[name] = t
    for layer in qm.layers:
        q = qm.weights[layer.name]
        w = layer.weight
        transposed = weight_is_transposed(qm.ir.node(layer.node), w)
        shape = tuple(q.values.shape)
        record = {"layer": layer.name, "tensor": w, "shape": list(shape), "transposed": transposed}
        layer_records.append(record)
        tensors |= scheme_for(q.fmt.spec).pack(w, q.fmt.spec, q.quantized())
        if q.outlier_index is not None:
            tensors[f"{w}.outlier_index"] = q.outlier_index.to(torch.int32)
            flat = q.values.reshape(-1)[q.outlier_index]
            tensors[f"{w}.outlier_value"] = flat.half()
    manifest = {
        "version": ARTIFACT_VERSION,
        "graph": qm.ir.graph_json(),
        "plan": qm.plan.to_json(),
        "layers": layer_records,
        "ranges": {k: list(v) for k, v in qm.ranges.items()},
        "source_sha256": source_sha256,
        "metrics": dict(metrics or {}),
    }
    meta = {"format": "mpq-artifact", "manifest": json.dumps(manifest, separators=(",", ":"))}
    return write_safetensors(Path(path), tensors, metadata=meta)


def load_artifact(path: Path) -> LoadedArtifact:
    """Rebuild the simulated model from ``model.mpq`` alone.

    Raises:
        CorruptFileError: not an MPQ artifact, or its tensors do not match the manifest.
        InvalidIRError / InvalidPlanError: the graph or plan inside is invalid.
    """
    path = Path(path)
    stored, meta = read_safetensors(path)
    if meta.get("format") != "mpq-artifact" or "manifest" not in meta:
        raise CorruptFileError(f"{path.name!r} is not an MPQ artifact (model.mpq)")
    try:
        manifest = json.loads(meta["manifest"])
        if manifest["version"] != ARTIFACT_VERSION:
            raise CorruptFileError(
                f"{path.name!r} is artifact version {manifest['version']}; this MPQ reads "
                f"version {ARTIFACT_VERSION}"
            )
        plan = QuantPlan.from_json(manifest["plan"])
        suffixes = {"", *stored_parts(), *_OUTLIER_PARTS}
        parts = {f"{rec['tensor']}{suffix}" for rec in manifest["layers"] for suffix in suffixes}
        tensors = {k: v for k, v in stored.items() if k not in parts}
        weights: dict[str, QuantizedWeight] = {}
        for rec in manifest["layers"]:
            fmt = plan.layers[rec["layer"]]
            q = _rebuild(stored, rec["tensor"], fmt, tuple(rec["shape"]))
            weights[rec["layer"]] = q
            tensors[rec["tensor"]] = q.values.T.contiguous() if rec["transposed"] else q.values
        ir = IRModel.from_json(manifest["graph"], tensors)
        ranges = {k: (float(v[0]), float(v[1])) for k, v in manifest.get("ranges", {}).items()}
        quantized = _quantized_model(ir, plan, weights, ranges)
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise CorruptFileError(f"{path.name!r} is a damaged MPQ artifact ({exc})") from None
    payload = sum(t.numel() * t.element_size() for t in stored.values())
    return LoadedArtifact(ir, plan, manifest, payload, path.stat().st_size, quantized)


def _quantized_model(
    ir: IRModel,
    plan: QuantPlan,
    weights: dict[str, QuantizedWeight],
    ranges: dict[str, tuple[float, float]],
) -> QuantizedModel:
    """The QuantizedModel of a loaded artifact; activation qparams from its fake-quant nodes."""
    layers = inventory(ir).layers
    if {layer.name for layer in layers} != set(weights):
        raise ValueError("the graph's layers do not match the stored weights")
    nodes = {n.name: n for n in ir.nodes}
    activations: dict[str, AffineQParams] = {}
    for layer in layers:
        for arg in nodes[layer.node].args:
            src = nodes.get(arg.name) if isinstance(arg, Ref) else None
            if src is not None and src.op == FAKE_QUANT_OP:
                _, scale, zp, qmin, qmax = src.args
                assert isinstance(scale, float) and isinstance(zp, int)
                assert isinstance(qmin, int) and isinstance(qmax, int)
                activations[layer.name] = AffineQParams(
                    torch.tensor(scale, dtype=torch.float32),
                    torch.tensor(zp, dtype=torch.int32),
                    qmin,
                    qmax,
                )
    return QuantizedModel(ir, plan, layers, weights, activations, ranges)


def _rebuild(
    stored: Mapping[str, torch.Tensor], w: str, fmt: LayerFormat, shape: tuple[int, ...]
) -> QuantizedWeight:
    """A layer's quantized weight (output channel first) from its stored parts."""
    q = scheme_for(fmt.spec).unpack(stored, w, fmt.spec, shape)
    values, outliers = q.values, None
    if f"{w}.outlier_index" in stored:
        outliers = stored[f"{w}.outlier_index"].long()
        values = values.reshape(-1).clone()
        values[outliers] = stored[f"{w}.outlier_value"].float()
        values = values.reshape(shape)
    return QuantizedWeight(fmt, values, q.codes, q.qparams, outliers)


def _layer_bytes(fmt: LayerFormat, shape: tuple[int, ...]) -> int:
    """Bytes of one layer weight: what its scheme packs, plus 6 per outlier."""
    return scheme_for(fmt.spec).nbytes(fmt.spec, shape) + 6 * min(fmt.outliers, math.prod(shape))
