"""Exporting a model to ONNX: a quantized model as QDQ, or a float IR as is.

The exported graph computes what MPQ's simulated model computes:

- every IR node becomes the ONNX nodes of its converter (``engine.export._ops_*``:
  tensor, activation, compare, create, reduce, rounding, shape, nn, pool, norm,
  resize);
  a model using an op without one is refused before anything is written; a
  multi-output op (split, ``max.dim``, ``native_layer_norm``) records its outputs
  for ``getitem`` to pick;
- each quantized layer's weight is stored in its own format and dequantized in
  the graph (:mod:`engine.export._weights`): ``DequantizeLinear(q, s) = q * s``
  reproduces the simulated weight bit for bit;
- each activation fake-quant node becomes ``QuantizeLinear -> DequantizeLinear``.

Opset 21 or later is needed: it is the first with INT4 tensors and blocked
(``block_size``) dequantization.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.apply import FAKE_QUANT_OP, QuantizedModel, weight_is_transposed
from engine.errors import UnsupportedExportError
from engine.export import _proto
from engine.export._builder import GraphBuilder, TensorHook, value_meta
from engine.export._ops_activation import ACTIVATION_OPS
from engine.export._ops_compare import COMPARE_OPS
from engine.export._ops_create import CREATE_OPS
from engine.export._ops_nn import NN_OPS, activation_storage
from engine.export._ops_norm import NORM_OPS
from engine.export._ops_pool import POOL_OPS
from engine.export._ops_reduce import REDUCE_OPS
from engine.export._ops_resize import RESIZE_OPS
from engine.export._ops_rounding import ROUNDING_OPS
from engine.export._ops_shape import SHAPE_OPS
from engine.export._ops_tensor import TENSOR_OPS
from engine.export._tensors import onnx_dtype
from engine.export._weights import WeightRecord, emit_weight
from engine.ir import IRModel
from engine.weights import QuantizedWeight

__all__ = [
    "CONVERTERS",
    "IR_VERSIONS",
    "ExportReport",
    "OnnxExport",
    "QuantizedLayer",
    "export_float_onnx",
    "export_layers_onnx",
    "export_onnx",
]

CONVERTERS = {
    **TENSOR_OPS,
    **ACTIVATION_OPS,
    **COMPARE_OPS,
    **CREATE_OPS,
    **REDUCE_OPS,
    **ROUNDING_OPS,
    **SHAPE_OPS,
    **NN_OPS,
    **POOL_OPS,
    **NORM_OPS,
    **RESIZE_OPS,
}
"""IR op name -> converter: the ops the exporter writes."""

IR_VERSIONS = {21: 10, 22: 10, 23: 11}
"""Opsets the exporter writes -> the ONNX IR version that goes with each."""


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote.

    Attributes:
        opset: the ONNX opset imported.
        file_bytes: size of the serialized model.
        initializer_bytes: bytes of tensor data (packed weights, scales, other tensors).
        layers: per quantized layer, how its weight is stored (empty for a float export).
        activations: number of activation QDQ pairs per storage type (``{"uint8": 4}``).
        notes: what differs from MPQ's own artifact (e.g. widths stored in wider types).
    """

    opset: int
    file_bytes: int
    initializer_bytes: int
    layers: tuple[WeightRecord, ...]
    activations: dict[str, int]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``layers`` as a list of objects)."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class OnnxExport:
    """A serialized ``ModelProto`` and the report of how it was written."""

    data: bytes
    report: ExportReport

    def save(self, path: Path) -> int:
        """Write :attr:`data` to ``path``; return the number of bytes written."""
        Path(path).write_bytes(self.data)
        return len(self.data)


@dataclass(frozen=True, eq=False)
class QuantizedLayer:
    """One quantized layer as the exporter needs it.

    Attributes:
        name: the layer name (``features.0``).
        tensor: the IR tensor holding its (simulated) weight.
        weight: the quantized weight, output channel first.
        transposed: the IR tensor is stored ``[in, out]`` (the transpose of ``weight``).
    """

    name: str
    tensor: str
    weight: QuantizedWeight
    transposed: bool


def export_onnx(qm: QuantizedModel, *, opset: int = 21) -> OnnxExport:
    """QDQ ONNX of a quantized model (weights in their formats, activations Q/DQ).

    Raises:
        UnsupportedExportError: an op without a converter, or an opset not in
            :data:`IR_VERSIONS`.
    """
    layers = [
        QuantizedLayer(
            layer.name,
            layer.weight,
            qm.weights[layer.name],
            weight_is_transposed(qm.ir.node(layer.node), layer.weight),
        )
        for layer in qm.layers
    ]
    return export_layers_onnx(qm.ir, layers, opset=opset)


def export_float_onnx(ir: IRModel, *, opset: int = 21) -> OnnxExport:
    """ONNX of a float IR (every tensor a plain initializer): the fp32 baseline."""
    return export_layers_onnx(ir, [], opset=opset)


def export_layers_onnx(
    ir: IRModel, layers: Sequence[QuantizedLayer], *, opset: int = 21
) -> OnnxExport:
    """ONNX of ``ir`` whose layer weights ``layers`` are stored quantized.

    Args:
        ir: the simulated model (layer weights hold their fake-quantized values).
        layers: the quantized layers; their IR tensors are replaced by the
            stored codes and the nodes dequantizing them.
        opset: the default-domain opset (21, 22 or 23).

    Raises:
        UnsupportedExportError: an op without a converter, or an unsupported opset.
    """
    if opset not in IR_VERSIONS:
        raise UnsupportedExportError(
            f"opset {opset} is not supported; use one of {sorted(IR_VERSIONS)} (INT4 weights "
            "and blocked dequantization need opset 21)"
        )
    missing = sorted({n.op for n in ir.nodes} - set(CONVERTERS))
    if missing:
        raise UnsupportedExportError(
            f"the model uses {len(missing)} operator(s) the ONNX exporter does not convert: "
            f"{', '.join(missing)}. Export the float model with torch.onnx.export instead, "
            "or open an issue asking for them"
        )
    b = GraphBuilder(meta=value_meta(ir), tensors=dict(ir.tensors))
    records: dict[str, WeightRecord] = {}
    for layer in layers:
        b.hooks[layer.tensor] = _hook(layer, records)
    for n in ir.nodes:
        CONVERTERS[n.op](b, n)
    inputs = [
        _proto.value_info(s.name, onnx_dtype(b.meta[s.name].dtype), s.shape) for s in ir.inputs
    ]
    outputs = []
    for r in ir.outputs:
        m = b.meta[r.name]
        outputs.append(_proto.value_info(b.value(r), onnx_dtype(m.dtype), m.shape))
    graph = _proto.graph("mpq", b.nodes, b.initializers, inputs, outputs)
    data = _proto.model(graph, ir_version=IR_VERSIONS[opset], opset=opset)
    order = [layer.name for layer in layers if layer.name in records]
    weight_records = tuple(records[name] for name in order)
    activations = Counter(
        activation_storage(int(n.args[3]), int(n.args[4]))[1]  # type: ignore[arg-type]
        for n in ir.nodes
        if n.op == FAKE_QUANT_OP
    )
    notes = sorted({r.note for r in weight_records if r.note})
    report = ExportReport(
        opset=opset,
        file_bytes=len(data),
        initializer_bytes=b.initializer_bytes,
        layers=weight_records,
        activations=dict(sorted(activations.items())),
        notes=tuple(notes),
    )
    return OnnxExport(data, report)


def _hook(layer: QuantizedLayer, records: dict[str, WeightRecord]) -> TensorHook:
    def emit(b: GraphBuilder, transpose: bool) -> str:
        name, record = emit_weight(
            b, layer.name, layer.tensor, layer.weight, flip=layer.transposed != transpose
        )
        records.setdefault(layer.name, record)
        return name

    return emit
