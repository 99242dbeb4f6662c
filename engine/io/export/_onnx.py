"""Exporting a model to ONNX: a quantized model as QDQ, or a float IR as is.

The exported graph computes what MPQ's simulated model computes:

- every IR node becomes the ONNX nodes of its converter (``engine.io.export._ops_*``:
  tensor, activation, compare, create, reduce, rounding, shape, nn, pool, norm,
  resize);
  a model using an op without one is refused before anything is written; a
  multi-output op (split, ``max.dim``, ``native_layer_norm``) records its outputs
  for ``getitem`` to pick;
- each quantized layer's weight is stored in its own format and dequantized in
  the graph (:mod:`engine.io.export._weights`): ``DequantizeLinear(q, s) = q * s``
  reproduces the simulated weight bit for bit;
- each activation fake-quant node becomes ``QuantizeLinear -> DequantizeLinear``;
- a model that runs at any batch (:attr:`IRModel.batch`) gets a graph that does
  too: ``dim_param: "batch"`` on its batched inputs and outputs, and every shape
  constant holding the batch computed from the first batched input's shape
  (:mod:`engine.io.export._batch`); where a converter cannot follow the batch the
  file keeps the stored batch and :attr:`ExportReport.notes` says so.

Opset 21 or later is needed: it is the first with INT4 tensors and blocked
(``block_size``) dequantization.

Size: one file (just over 300 lines): the export entry points and the per-node
driver that calls the converters (``_ops_*``, already split by op family).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.errors import UnsupportedExportError
from engine.io.export import _proto
from engine.io.export._batch import PROBES, Shape, dynamic_batch, written
from engine.io.export._builder import GraphBuilder, TensorHook, value_meta
from engine.io.export._ops_activation import ACTIVATION_OPS
from engine.io.export._ops_compare import COMPARE_OPS
from engine.io.export._ops_create import CREATE_OPS
from engine.io.export._ops_nn import NN_OPS, activation_storage
from engine.io.export._ops_norm import NORM_OPS
from engine.io.export._ops_pool import POOL_OPS
from engine.io.export._ops_reduce import REDUCE_OPS
from engine.io.export._ops_resize import RESIZE_OPS
from engine.io.export._ops_rounding import ROUNDING_OPS
from engine.io.export._ops_shape import SHAPE_OPS
from engine.io.export._ops_tensor import TENSOR_OPS
from engine.io.export._tensors import onnx_dtype
from engine.io.export._weights import WeightRecord, emit_weight
from engine.ir import IRModel
from engine.quant import QuantizedWeight
from engine.transforms import FAKE_QUANT_OP, QuantizedModel, weight_is_transposed

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
        notes: what differs from MPQ's own artifact (e.g. widths stored in wider types),
            and why a model that runs at any batch was exported at its fixed batch.
        dynamic_batch: the graph takes any batch: dimension 0 of each batched input
            is ``dim_param: "batch"`` (see :mod:`engine.io.export._batch`).
    """

    opset: int
    file_bytes: int
    initializer_bytes: int
    layers: tuple[WeightRecord, ...]
    activations: dict[str, int]
    notes: tuple[str, ...]
    dynamic_batch: bool = False

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
    records: dict[str, WeightRecord] = {}
    g = _convert(ir, layers, records)
    b = g.builder
    in_dims, out_dims, batch_note = _any_batch(ir, layers, g)
    graph = _proto.graph(
        "mpq",
        b.nodes,
        [i.encode() for i in b.initializers],
        [
            _proto.value_info(name, elem, dims)
            for (name, elem), dims in zip(g.input_types, in_dims, strict=True)
        ],
        [
            _proto.value_info(name, elem, dims)
            for (name, elem), dims in zip(g.output_types, out_dims, strict=True)
        ],
    )
    data = _proto.model(graph, ir_version=IR_VERSIONS[opset], opset=opset)
    order = [layer.name for layer in layers if layer.name in records]
    weight_records = tuple(records[name] for name in order)
    activations = Counter(
        activation_storage(int(n.args[3]), int(n.args[4]))[1]  # type: ignore[arg-type]
        for n in ir.nodes
        if n.op == FAKE_QUANT_OP
    )
    notes = sorted({r.note for r in weight_records if r.note})
    notes += [batch_note] if batch_note else []
    report = ExportReport(
        opset=opset,
        file_bytes=len(data),
        initializer_bytes=b.initializer_bytes,
        layers=weight_records,
        activations=dict(sorted(activations.items())),
        notes=tuple(notes),
        dynamic_batch=ir.batch is not None and not batch_note,
    )
    return OnnxExport(data, report)


@dataclass(frozen=True, eq=False)
class _Converted:
    """One conversion of an IR: the graph built, and its inputs' and outputs' names and types."""

    builder: GraphBuilder
    input_types: list[tuple[str, int]]
    input_shapes: list[tuple[int, ...]]
    output_types: list[tuple[str, int]]
    output_shapes: list[tuple[int, ...]]


def _any_batch(
    ir: IRModel, layers: Sequence[QuantizedLayer], g: _Converted
) -> tuple[list[Shape], list[Shape], str]:
    """Input and output shapes of the file, and a note when it keeps a fixed batch.

    A model with a batch is converted again at two probe batches and ``g`` made to
    run at any batch (:func:`engine.io.export._batch.dynamic_batch`); the shapes then
    carry ``dim_param`` s.
    """
    shapes: tuple[list[Shape], list[Shape]] = (list(g.input_shapes), list(g.output_shapes))
    if ir.batch is None:
        return (*shapes, "")
    probes = [written(g.builder, ir.batch.size, g.input_shapes, g.output_shapes)]
    for n in [p for p in PROBES if p != ir.batch.size][:2]:
        try:
            at = _convert(ir.at_batch(n), layers, {})
        except Exception as exc:  # any failure here: the fixed-batch file is still right
            why = f"converting it at batch {n} failed ({type(exc).__name__}: {exc})"
            return (*shapes, f"exported with a fixed batch of {ir.batch.size}: {why}")
        probes.append(written(at.builder, n, at.input_shapes, at.output_shapes))
    found = dynamic_batch(ir, g.builder, probes)
    if isinstance(found, str):
        return (*shapes, found)
    return (*found, "")


def _convert(
    ir: IRModel, layers: Sequence[QuantizedLayer], records: dict[str, WeightRecord]
) -> _Converted:
    """Run every node's converter on a new builder (weights of ``layers`` through hooks)."""
    b = GraphBuilder(meta=value_meta(ir), tensors=dict(ir.tensors), any_batch=ir.batch is not None)
    for layer in layers:
        b.hooks[layer.tensor] = _hook(layer, records)
    for n in ir.nodes:
        b.source = n.name
        CONVERTERS[n.op](b, n)
    b.source = ""
    outputs = [(b.value(r), b.meta[r.name]) for r in ir.outputs]
    return _Converted(
        b,
        [(s.name, onnx_dtype(b.meta[s.name].dtype)) for s in ir.inputs],
        [s.shape for s in ir.inputs],
        [(name, onnx_dtype(m.dtype)) for name, m in outputs],
        [m.shape for _, m in outputs],
    )


def _hook(layer: QuantizedLayer, records: dict[str, WeightRecord]) -> TensorHook:
    """Emit the layer's weight once; a read in the other orientation (a tied embedding
    and LM head) transposes the dequantized value instead of storing the codes twice."""
    emitted: dict[bool, str] = {}

    def emit(b: GraphBuilder, transpose: bool) -> str:
        flip = layer.transposed != transpose
        if flip in emitted:
            return emitted[flip]
        if (not flip) in emitted:
            emitted[flip] = b.add("Transpose", [emitted[not flip]], hint=layer.tensor, perm=[1, 0])
            return emitted[flip]
        name, record = emit_weight(b, layer.name, layer.tensor, layer.weight, flip=flip)
        records.setdefault(layer.name, record)
        emitted[flip] = name
        return name

    return emit
