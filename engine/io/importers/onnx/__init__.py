"""Import an ONNX model into MPQ IR, without the ``onnx`` package and without running anything.

The file is decoded by MPQ's own protobuf reader (:mod:`engine.io.importers.onnx._proto`); each
node of the ``ai.onnx`` subset that CNNs and BERT-style encoders use becomes allow-listed ATen
ops (the converters in ``_nn``, ``_elementwise`` and ``_shape``). Every input
must have a static shape but dimension 0, which may be dynamic (see :func:`_input_spec`);
shape computations on those are folded at import, so the IR holds
only tensor arithmetic. Stored tensors keep their initializer names (for torch exports, the
module path: ``features.0.weight``); the weights torch.onnx names itself (``onnx::MatMul_725``,
e.g. for transposed or BN-folded weights) are renamed after their layer when that is
unambiguous -- from the bias's name (``encoder.layer.0.attention.self.query.bias``) or the
node's scope (``/features/features.0/Conv``) -- so that layer names match a torch.export of the
same model.
"""

from __future__ import annotations

import math
import mmap
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch

from engine.errors import (
    ArchiveLimitError,
    CorruptFileError,
    FileMissingError,
    ModelFormatError,
    UnsupportedOpsError,
)
from engine.io.importers.onnx._activation import ACTIVATION_CONVERTERS
from engine.io.importers.onnx._attrs import dtype_name, torch_dtype
from engine.io.importers.onnx._create import CREATE_CONVERTERS
from engine.io.importers.onnx._einsum import EINSUM_CONVERTERS
from engine.io.importers.onnx._elementwise import ELEMENTWISE_CONVERTERS
from engine.io.importers.onnx._external import ExternalDataReader
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._index import INDEX_CONVERTERS
from engine.io.importers.onnx._math import MATH_CONVERTERS
from engine.io.importers.onnx._names import layer_renames, rename_tensors
from engine.io.importers.onnx._nn import NN_CONVERTERS
from engine.io.importers.onnx._norm import NORM_CONVERTERS
from engine.io.importers.onnx._pad import PAD_CONVERTERS
from engine.io.importers.onnx._proto import decode_model
from engine.io.importers.onnx._reduce import REDUCE_CONVERTERS
from engine.io.importers.onnx._resize import RESIZE_CONVERTERS
from engine.io.importers.onnx._shape import SHAPE_CONVERTERS
from engine.io.importers.onnx._types import OnnxGraph, OnnxModel, OnnxValueInfo
from engine.ir import DYNAMIC_BATCH, DType, IRModel, TensorSpec

__all__ = ["FOLD_FLOOR", "MAX_OPSET", "MIN_OPSET", "SUPPORTED_ONNX_OPS", "import_onnx"]

MIN_OPSET = 7
MAX_OPSET = 25
"""The ``ai.onnx`` opsets whose semantics for the supported ops were checked (onnx 1.23)."""

_MAX_INPUT_NUMEL = 1 << 40
FOLD_FLOOR = 64 * 1024 * 1024
"""Bytes of constants any model may make at import, beyond twice its own size."""
_CONVERTERS = {
    **NN_CONVERTERS,
    **ELEMENTWISE_CONVERTERS,
    **SHAPE_CONVERTERS,
    **ACTIVATION_CONVERTERS,
    **MATH_CONVERTERS,
    **REDUCE_CONVERTERS,
    **NORM_CONVERTERS,
    **PAD_CONVERTERS,
    **RESIZE_CONVERTERS,
    **INDEX_CONVERTERS,
    **CREATE_CONVERTERS,
    **EINSUM_CONVERTERS,
}
SUPPORTED_ONNX_OPS = frozenset(_CONVERTERS)
"""ONNX operator types (domain ``ai.onnx``) the importer maps to IR."""


def import_onnx(path: Path, *, max_bytes: int) -> IRModel:
    """Read ``path`` (an ONNX ``ModelProto``) and convert it to validated IR.

    Args:
        path: The .onnx file. External tensor data may live only in files inside its directory.
        max_bytes: Limit on the file's size plus all external data read, and separately on
            the constants folding may create. Those are also held to :data:`FOLD_FLOOR`
            plus twice the model's bytes (file and external data read): folding transposes
            or rescales weights, so a real model folds about its own size, while a few
            bytes of ``ConstantOfShape`` can describe gigabytes.

    Returns:
        The IR: graph inputs (initializers excluded) in order as IR inputs, outputs in order.

    Raises:
        FileMissingError: ``path`` is not a file.
        ArchiveLimitError: the file, its external data or its folded constants are too big.
        CorruptFileError / ModelFormatError: the bytes are not a well-formed ONNX model.
        UnsupportedOpsError: ops outside :data:`SUPPORTED_ONNX_OPS` (all listed at once), an
            opset outside ``MIN_OPSET..MAX_OPSET``, a dynamic input dim, or an unsupported use
            of a supported op.
        OnnxExternalDataError: external data outside the model's directory.
        TrainingModeError: batch norm or dropout in training mode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileMissingError(f"{str(path)!r} is not a file; pass the path of a .onnx model")
    size = path.stat().st_size
    if size > max_bytes:
        raise ArchiveLimitError(
            f"the ONNX file {path.name!r} is {size} bytes, over the limit of {max_bytes} bytes; "
            "upload a smaller model or raise the limit"
        )
    model = _decode_file(path, size, max_bytes)
    opset = _opset(model)
    _check_ops(model.graph)
    reader = ExternalDataReader(path, budget=max_bytes - size)
    fold_budget = min(max_bytes, FOLD_FLOOR + 2 * size)  # grows by 2x external bytes read
    return _convert(model.graph, opset, reader, fold_budget=fold_budget)


def _decode_file(path: Path, size: int, max_bytes: int) -> OnnxModel:
    """Decode the file through a read-only memory map of its first ``size`` bytes.

    The file is never read whole into memory: the decoder touches only the pages it
    parses and the fields it copies out, so a large file that is not a model costs
    nothing, and a model costs about its tensors' bytes.
    """
    if size == 0:
        return decode_model(b"", max_bytes=max_bytes)
    with open(path, "rb") as f:
        try:
            data = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ)
        except (ValueError, OSError):  # the file shrank after the size check
            raise CorruptFileError(
                f"the ONNX file {path.name!r} changed while being read"
            ) from None
        with data:
            return decode_model(data, max_bytes=max_bytes)


def _opset(model: OnnxModel) -> int:
    opset = model.opset.get("", model.opset.get("ai.onnx"))
    if opset is None:
        raise ModelFormatError("the ONNX model imports no ai.onnx opset; re-export it")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedOpsError(
            f"the ONNX model uses opset {opset}; MPQ reads opsets {MIN_OPSET} to {MAX_OPSET}. "
            "Re-export with torch.onnx.export(..., opset_version=17)."
        )
    return opset


def _check_ops(graph: OnnxGraph) -> None:
    """Refuse the model if any node is outside the supported set, naming all of them."""
    bad = Counter(
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        for n in graph.nodes
        if n.domain not in ("", "ai.onnx") or n.op_type not in _CONVERTERS
    )
    if bad:
        listed = ", ".join(f"{op} (x{count})" for op, count in sorted(bad.items()))
        raise UnsupportedOpsError(
            f"the ONNX model uses {len(bad)} operator type(s) MPQ does not import: {listed}. "
            f"Supported: {', '.join(sorted(_CONVERTERS))}. Re-export the model without them "
            "or open an issue asking for them."
        )


def _convert(
    graph: OnnxGraph, opset: int, reader: ExternalDataReader, *, fold_budget: int
) -> IRModel:
    consumers = Counter(name for n in graph.nodes for name in n.inputs if name)
    consumers.update(o.name for o in graph.outputs)
    b = GraphBuilder(opset=opset, fold_budget=fold_budget, consumers=consumers, loader=reader)
    inits = {t.name: t for t in graph.initializers}
    specs: list[TensorSpec] = []
    for info in graph.inputs:
        if info.name in inits:
            continue
        spec = _input_spec(info)
        # torch.onnx names unnamed inputs like "onnx::Reshape_0"; IR names are identifiers
        spec = replace(spec, name=_input_name(spec.name, {s.name for s in specs}))
        specs.append(spec)
        b.names.reserve(spec.name)
        meta = torch.empty(spec.shape, dtype=DType(spec.dtype).torch, device="meta")
        b.bind(info.name, Val(meta, ref=spec.name))
    b.names.hold(inits)  # initializer names go to their tensors, not to nodes
    for name, t in inits.items():
        if name in consumers and name not in b.values:
            b.bind(name, b.constant(b.load(t), name))
    for node in graph.nodes:
        missing = [i for i in node.inputs if i and i not in b.values]
        if missing:
            raise CorruptFileError(
                f"ONNX node {node.name!r} ({node.op_type}) reads {missing[0]!r}, which no "
                "input, initializer or earlier node defines (the graph must be sorted)"
            )
        if not node.outputs or not node.outputs[0]:
            raise CorruptFileError(f"ONNX node {node.name!r} ({node.op_type}) has no output")
        b.begin(node)
        b.bind(node.outputs[0], _CONVERTERS[node.op_type](b, node))
        # a multi-output converter (Split) binds the outputs after the first itself
        used = [o for o in node.outputs[1:] if o and consumers.get(o) and o not in b.values]
        if used:
            raise UnsupportedOpsError(
                f"ONNX node {node.name!r} ({node.op_type}) has its optional output(s) {used} "
                "read; MPQ imports only the first output (inference mode)"
            )
    outputs, output_specs = [], []
    for o in graph.outputs:
        if o.name not in b.values:
            raise CorruptFileError(f"graph output {o.name!r} is not computed by the graph")
        v = b.values[o.name]
        ref = b.ref(v)
        outputs.append(ref)
        output_specs.append(TensorSpec(ref.name, tuple(v.shape), dtype_name(v.dtype)))
    renames = layer_renames(b.nodes, b.generated, b.scopes, b.names, outputs)
    nodes, tensors = rename_tensors(b.nodes, b.tensors, renames)
    return IRModel(
        inputs=tuple(specs),
        nodes=tuple(nodes),
        outputs=tuple(outputs),
        tensors=tensors,
        output_specs=tuple(output_specs),
    )


def _input_name(name: str, taken: set[str]) -> str:
    """``name`` if it is a valid IR name, else its non-identifier characters as ``_``."""
    parts = [re.sub(r"[^A-Za-z0-9_]", "_", p) or "_" for p in name.split(".")]
    out = ".".join(parts) or "input"
    while out in taken:
        out += "_"
    return out


def _input_spec(v: OnnxValueInfo) -> TensorSpec:
    """The IR input for a graph input; refuses unknown rank, symbolic or absurd dims.

    A symbolic or unknown dimension 0 (``dim_param``: a dynamic batch) is given
    :data:`engine.ir.DYNAMIC_BATCH`; :func:`engine.ir.generalize_batch` then
    makes the imported graph run at any batch.
    """
    if v.shape is None:
        raise UnsupportedOpsError(
            f"model input {v.name!r} has unknown rank; export the model with input shapes "
            "(torch.onnx.export records them)"
        )
    dims: list[int] = []
    for i, d in enumerate(v.shape):
        if i == 0 and not (isinstance(d, int) and d > 0):
            d = DYNAMIC_BATCH
        if not (isinstance(d, int) and d >= 0):
            bad = i
            break
        dims.append(d)
    else:
        bad = None
    if bad is not None:
        raise UnsupportedOpsError(
            f"model input {v.name!r} has shape {list(v.shape)}: dimension {bad} is dynamic. "
            "MPQ takes a dynamic batch (dimension 0) and fixed other dimensions: export with "
            "dynamic_axes only on dimension 0 (e.g. {'input': {0: 'batch'}}), or fix the dims "
            "with onnx.tools.update_model_dims.update_inputs_outputs_dims"
        )
    if math.prod(dims) > _MAX_INPUT_NUMEL:
        raise UnsupportedOpsError(
            f"model input {v.name!r} has shape {list(dims)}, over {_MAX_INPUT_NUMEL} elements; "
            "export the model with a realistic example input"
        )
    dtype = torch_dtype(v.elem_type, f"model input {v.name!r}")
    return TensorSpec(v.name, tuple(dims), dtype_name(dtype))
