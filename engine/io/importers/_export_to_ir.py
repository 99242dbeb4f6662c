"""Convert a loaded ``torch.export.ExportedProgram`` into MPQ IR.

Runs inside the isolated importer process (:mod:`engine.io.importers._pt2_child`),
never in the API or worker process: the ExportedProgram came from an untrusted
archive. The output is re-validated by the parent when it reads the IR back.

Size: one file (just over 300 lines): one walk over the exported graph; the node,
constant and input handlers share its state (names, tensors, the specializer).
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from engine.errors import TrainingModeError, UnsupportedOpsError
from engine.io.importers._functional import FUNCTIONAL_OPS, rewrite_functional
from engine.ir import (
    DYNAMIC_BATCH,
    Device,
    DType,
    IRModel,
    Layout,
    MemoryFormat,
    Node,
    Ref,
    TensorSpec,
    Value,
)

__all__ = ["exported_program_to_ir"]

_DROPPED = {
    "aten._assert_tensor_metadata.default",
    "aten._assert_scalar.default",
    "aten.sym_constrain_range_for_size.default",
    "aten._assert_async.msg",
}
"""Checks with no output and no effect on values; the IR leaves them out."""


def exported_program_to_ir(ep: ExportedProgram) -> IRModel:
    """IR of ``ep``: user inputs become IR inputs, parameters/buffers/constants tensors.

    In-place ops (``add_``, ``relu_``, ``hardtanh_``, ``dropout_``, ``copy_``, ...) are
    removed first by functionalising the program (``run_decompositions({})``, which
    decomposes nothing else except batch norm, mapped back here). A dynamic batch
    (dimension 0 of the inputs, one symbol) is specialised at
    :data:`engine.ir.DYNAMIC_BATCH`, or the nearest size its range allows: every
    symbolic size becomes an integer, and :func:`engine.ir.generalize_batch` later
    finds which of them carry the batch.

    Raises:
        TrainingModeError: the program mutates buffers or runs batch norm in training mode.
        UnsupportedOpsError: it uses ops off the allow-list, non-tensor inputs, or a
            symbolic dimension other than the batch.
    """
    if any(_mutates(n) for n in ep.graph.nodes):
        ep = ep.run_decompositions({})
    sig = ep.graph_signature
    sizes = _Specializer(ep)
    if any(s.kind != OutputKind.USER_OUTPUT for s in sig.output_specs):
        raise TrainingModeError(
            "the exported program updates buffers in place (batch-norm statistics in training "
            "mode); call model.eval() before torch.export.export and export again"
        )
    names: dict[str, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    inputs: list[TensorSpec] = []
    for spec in sig.input_specs:
        ph = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            val = _placeholder_val(ep, ph)
            inputs.append(TensorSpec(ph, sizes.shape(val, ph), _dtype(val.dtype)))
            names[ph] = ph
            continue
        target = spec.target
        if target is None:
            raise UnsupportedOpsError(f"input {ph!r} of kind {spec.kind.name} has no target")
        source = ep.constants if spec.kind in (InputKind.CONSTANT_TENSOR,) else ep.state_dict
        if spec.kind == InputKind.BUFFER and not spec.persistent:
            source = ep.constants
        value = source[target]
        if not isinstance(value, torch.Tensor):
            raise UnsupportedOpsError(f"input {target!r} is a {type(value).__name__}, not a tensor")
        tensors[target] = value.detach().clone().contiguous()
        names[ph] = target
    nodes: list[Node] = []
    bad: set[str] = set()
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        op = "getitem" if n.target is operator.getitem else str(n.target)
        if op in _DROPPED or sizes.record(n):
            continue
        if op == _WEIGHT_NORM and _fold_weight_norm(n, names, tensors):
            continue
        if op == _BN_NO_TRAINING:
            x, w, b, mean, var, momentum, eps = n.args
            n.args, n.kwargs = (x, w, b, mean, var, False, momentum, eps, False), {}
            op = "aten.batch_norm.default"
        elif op == "getitem" and str(getattr(n.args[0], "target", "")) == _BN_NO_TRAINING:
            names[n.name] = names[n.args[0].name]
            continue
        if op == "aten.batch_norm.default" and _arg(n, 5, "training"):
            raise TrainingModeError(
                f"batch norm {n.name!r} runs in training mode; call model.eval() before "
                "torch.export.export and export again"
            )
        try:
            args = tuple(_value(a, names, sizes.values) for a in n.args)
            kwargs = {k: _value(v, names, sizes.values) for k, v in n.kwargs.items()}
        except _Unsupported as exc:
            bad.add(f"{op} (argument {exc})")
            continue
        names[n.name] = n.name
        node = Node(n.name, op, args, kwargs)
        if op in FUNCTIONAL_OPS:
            base = n.args[0].meta["val"]
            src = n.args[1].meta.get("val") if isinstance(n.args[1], fx.Node) else None
            src_dtype = _dtype(src.dtype) if isinstance(src, torch.Tensor) else _dtype(base.dtype)
            shape = sizes.shape(base, n.name)
            nodes += rewrite_functional(node, shape, _dtype(base.dtype), src_dtype)
            continue
        nodes.append(node)
    if bad:
        raise UnsupportedOpsError(f"unsupported argument types: {', '.join(sorted(bad))}")
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    outs = [a for a in out_node.args[0]]
    if not all(isinstance(a, fx.Node) for a in outs):
        raise UnsupportedOpsError("the model returns a non-tensor output; return tensors only")
    output_specs = tuple(
        TensorSpec(a.name, sizes.shape(a.meta["val"], a.name), _dtype(a.meta["val"].dtype))
        for a in outs
        if isinstance(a.meta.get("val"), torch.Tensor)
    )
    return IRModel(
        inputs=tuple(inputs),
        nodes=tuple(nodes),
        outputs=tuple(Ref(names[a.name]) for a in outs),
        tensors=tensors,
        output_specs=output_specs if len(output_specs) == len(outs) else (),
    ).without_unused_tensors()


class _Unsupported(Exception):
    pass


_BN_NO_TRAINING = "aten._native_batch_norm_legit_no_training.default"
_WEIGHT_NORM = "aten._weight_norm.default"


def _fold_weight_norm(n: fx.Node, names: dict[str, str], tensors: dict[str, torch.Tensor]) -> bool:
    """Store ``_weight_norm(v, g, dim)`` of stored ``v``, ``g`` as the weight it computes.

    ``w = v · g / ||v||``, the norm over every dimension but ``dim`` (torch's
    ``weight_norm`` parametrization). Stored under ``<module>.weight`` (from ``v``'s
    ``<module>.parametrizations.weight.original1``), so the layer reading it is
    quantizable and named like any other. False (left as an op) when ``v`` or ``g``
    is computed.
    """
    v_node, g_node = n.args[0], n.args[1]
    if not isinstance(v_node, fx.Node) or not isinstance(g_node, fx.Node):
        return False
    v_name, g_name = names.get(v_node.name), names.get(g_node.name)
    if v_name not in tensors or g_name not in tensors:
        return False
    dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
    if not isinstance(dim, int):
        return False
    w = torch._weight_norm(tensors[v_name].double(), tensors[g_name].double(), dim)
    head, found, _ = f".{v_name}".partition(".parametrizations.")
    name = f"{head[1:]}.weight".lstrip(".") if found else f"{n.name}.weight"
    while name in tensors or name in names.values():
        name = f"{name}_"
    tensors[name] = w.to(tensors[v_name].dtype).contiguous()
    names[n.name] = name
    return True


def _mutates(n: fx.Node) -> bool:
    """Whether ``n`` calls an op that writes into one of its inputs (``add_``, ``copy_``)."""
    target = n.target
    return isinstance(target, torch._ops.OpOverload) and target._schema.is_mutable


class _Specializer:
    """Integer values for a program's symbolic sizes, with its batch symbol at one size.

    The batch symbol is dimension 0 of the inputs; it takes
    :data:`engine.ir.DYNAMIC_BATCH` clipped to the program's range for it. Any
    other free symbol is refused.
    """

    def __init__(self, ep: ExportedProgram) -> None:
        self.values: dict[str, int] = {}
        self.symbol: Any = None
        user = {
            s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT
        }
        for n in ep.graph.nodes:
            val = n.meta.get("val")
            if n.op == "placeholder" and n.name in user and isinstance(val, torch.Tensor):
                for i, d in enumerate(val.shape):
                    if isinstance(d, torch.SymInt):
                        self._batch_symbol(d, i, n.name)
        self.size = DYNAMIC_BATCH
        if self.symbol is not None:
            lo, hi = _range(ep, self.symbol)
            self.size = max(lo, min(hi, DYNAMIC_BATCH))

    def _batch_symbol(self, d: torch.SymInt, dim: int, name: str) -> None:
        expr = d.node.expr
        if dim == 0 and expr.is_Symbol and self.symbol in (None, expr):
            self.symbol = expr
            return
        raise UnsupportedOpsError(
            f"model input {name!r} has a dynamic dimension {dim} ({expr}); MPQ takes a dynamic "
            "batch (dimension 0, the same for every input) and fixed other dimensions. Export "
            "with dynamic_shapes only on dimension 0 of each input"
        )

    def size_of(self, v: Any, what: str) -> int:
        """The integer value of a size (an int, or a SymInt in the batch symbol)."""
        if not isinstance(v, torch.SymInt):
            return int(v)
        expr = v.node.expr
        if self.symbol is not None:
            expr = expr.xreplace({self.symbol: self.size})
        if not (isinstance(expr, int) or getattr(expr, "is_Integer", False)):
            raise UnsupportedOpsError(f"{what} has the symbolic size {v.node.expr}")
        return int(expr)

    def shape(self, val: torch.Tensor, what: str) -> tuple[int, ...]:
        return tuple(self.size_of(d, what) for d in val.shape)

    def record(self, n: fx.Node) -> bool:
        """True (and remember its value) when ``n`` computes a size rather than a tensor."""
        val = n.meta.get("val")
        if isinstance(val, torch.SymBool | torch.SymFloat):
            if n.users:
                raise UnsupportedOpsError(f"{n.name} computes a symbolic {type(val).__name__}")
            return True
        if not isinstance(val, torch.SymInt):
            return False
        self.values[n.name] = self.size_of(val, n.name)
        return True


def _range(ep: ExportedProgram, symbol: Any) -> tuple[int, int]:
    """The (lower, upper) sizes ``symbol`` may take; unbounded ends become 1 and DYNAMIC_BATCH."""
    vr = ep.range_constraints.get(symbol)
    lo = _finite(vr.lower, 1) if vr is not None else 1
    hi = _finite(vr.upper, DYNAMIC_BATCH) if vr is not None else DYNAMIC_BATCH
    return max(1, lo), max(1, lo, hi)


def _finite(bound: Any, default: int) -> int:
    try:
        return int(bound)
    except (TypeError, ValueError, AttributeError, OverflowError):  # sympy / torch infinities
        return default


def _placeholder_val(ep: ExportedProgram, name: str) -> torch.Tensor:
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == name)
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise UnsupportedOpsError(f"model input {name!r} is not a tensor; MPQ takes tensor inputs")
    return val


def _arg(n: fx.Node, index: int, name: str) -> Any:
    return n.args[index] if len(n.args) > index else n.kwargs.get(name)


def _dtype(d: torch.dtype) -> str:
    return str(d).removeprefix("torch.")


def _value(v: Any, names: dict[str, str], sizes: dict[str, int]) -> Value:
    if isinstance(v, fx.Node):
        if v.name in sizes:
            return sizes[v.name]
        if v.name not in names:
            raise _Unsupported(f"reference to dropped value {v.name}")
        return Ref(names[v.name])
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return [_value(x, names, sizes) for x in v]
    if isinstance(v, torch.dtype):
        return DType(_dtype(v))
    if isinstance(v, torch.device):
        return Device(v.type)
    if isinstance(v, torch.layout):
        return Layout(str(v).removeprefix("torch."))
    if isinstance(v, torch.memory_format):
        return MemoryFormat(str(v).removeprefix("torch."))
    raise _Unsupported(type(v).__name__)
