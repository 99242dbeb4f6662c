"""Level 0 of the engine: MPQ's data-only model IR.

An :class:`IRModel` is everything MPQ keeps of an uploaded model: named input specs,
a topologically ordered list of :class:`Node` s whose ops come from the allow-list
(:data:`ALLOWED_OPS`, each op name resolved to its torch callable by :func:`resolve`),
the output references, and the tensors. Node arguments are plain data (:class:`Ref`,
:class:`DType`, ... and lists of these): nothing in an IR can name a Python callable or
carry code. On disk an IR is one safetensors file with the graph as JSON in its header
(:func:`save_ir`, :func:`load_ir`). :func:`to_graph_module` turns an IR into a runnable
``torch.fx.GraphModule``; :func:`generalize_batch` finds which literals carry the batch.

Modules: ``_values`` (argument values, specs, nodes), ``_model`` (:class:`IRModel`,
validation, JSON), ``_files`` (the file format), ``_ops`` (the op table), ``_fx``
(to torch.fx, shapes on the meta device), ``_batch`` and ``_batch_trace`` (batch
generalization and its two-batch trace), ``_safetensors`` (a reader that trusts
nothing, and a writer).
"""

from __future__ import annotations

from engine.ir._batch import DYNAMIC_BATCH, generalize_batch
from engine.ir._files import is_ir_file, load_ir, save_ir
from engine.ir._fx import bind, infer_meta, infer_shapes, to_graph_module
from engine.ir._model import IR_VERSION, IRModel
from engine.ir._ops import (
    ALLOWED_OPS,
    CONV_OPS,
    EMBEDDING_OPS,
    FOLDABLE_OPS,
    LINEAR_OPS,
    MATMUL_OPS,
    QUANTIZABLE_OPS,
    resolve,
)
from engine.ir._safetensors import read_safetensors, write_safetensors
from engine.ir._values import (
    BatchDim,
    BatchSite,
    Device,
    DType,
    Layout,
    MemoryFormat,
    Node,
    Ref,
    TensorSpec,
    Value,
)

__all__ = [
    "ALLOWED_OPS",
    "CONV_OPS",
    "DYNAMIC_BATCH",
    "EMBEDDING_OPS",
    "FOLDABLE_OPS",
    "IR_VERSION",
    "LINEAR_OPS",
    "MATMUL_OPS",
    "QUANTIZABLE_OPS",
    "BatchDim",
    "BatchSite",
    "DType",
    "Device",
    "IRModel",
    "Layout",
    "MemoryFormat",
    "Node",
    "Ref",
    "TensorSpec",
    "Value",
    "bind",
    "generalize_batch",
    "infer_meta",
    "infer_shapes",
    "is_ir_file",
    "load_ir",
    "read_safetensors",
    "resolve",
    "save_ir",
    "to_graph_module",
    "write_safetensors",
]
