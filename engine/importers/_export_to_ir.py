"""Convert a loaded ``torch.export.ExportedProgram`` into MPQ IR.

Runs inside the isolated importer process (:mod:`engine.importers._pt2_child`),
never in the API or worker process: the ExportedProgram came from an untrusted
archive. The output is re-validated by the parent when it reads the IR back.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from engine.errors import TrainingModeError, UnsupportedOpsError
from engine.ir import Device, DType, IRModel, Layout, MemoryFormat, Node, Ref, TensorSpec, Value

__all__ = ["exported_program_to_ir"]

_DROPPED = {"aten._assert_tensor_metadata.default", "aten._assert_scalar.default"}
"""Checks with no output and no effect on values; the IR leaves them out."""


def exported_program_to_ir(ep: ExportedProgram) -> IRModel:
    """IR of ``ep``: user inputs become IR inputs, parameters/buffers/constants tensors.

    Raises:
        TrainingModeError: the program mutates buffers or runs batch norm in training mode.
        UnsupportedOpsError: it uses ops off the allow-list, or non-tensor inputs.
    """
    sig = ep.graph_signature
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
            inputs.append(TensorSpec(ph, tuple(int(d) for d in val.shape), _dtype(val.dtype)))
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
        if op in _DROPPED:
            continue
        if op == "aten.batch_norm.default" and _arg(n, 5, "training"):
            raise TrainingModeError(
                f"batch norm {n.name!r} runs in training mode; call model.eval() before "
                "torch.export.export and export again"
            )
        try:
            args = tuple(_value(a, names, bad) for a in n.args)
            kwargs = {k: _value(v, names, bad) for k, v in n.kwargs.items()}
        except _Unsupported as exc:
            bad.add(f"{op} (argument {exc})")
            continue
        names[n.name] = n.name
        nodes.append(Node(n.name, op, args, kwargs))
    if bad:
        raise UnsupportedOpsError(f"unsupported argument types: {', '.join(sorted(bad))}")
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    outs = [a for a in out_node.args[0]]
    if not all(isinstance(a, fx.Node) for a in outs):
        raise UnsupportedOpsError("the model returns a non-tensor output; return tensors only")
    output_specs = tuple(
        TensorSpec(a.name, tuple(int(d) for d in a.meta["val"].shape), _dtype(a.meta["val"].dtype))
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


def _placeholder_val(ep: ExportedProgram, name: str) -> torch.Tensor:
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == name)
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        raise UnsupportedOpsError(f"model input {name!r} is not a tensor; MPQ takes tensor inputs")
    if not all(isinstance(d, int) for d in val.shape):
        raise UnsupportedOpsError(
            f"model input {name!r} has a dynamic shape {tuple(val.shape)}; export with fixed "
            "shapes (no dynamic_shapes) for now"
        )
    return val


def _arg(n: fx.Node, index: int, name: str) -> Any:
    return n.args[index] if len(n.args) > index else n.kwargs.get(name)


def _dtype(d: torch.dtype) -> str:
    return str(d).removeprefix("torch.")


def _value(v: Any, names: dict[str, str], bad: set[str]) -> Value:
    if isinstance(v, fx.Node):
        if v.name not in names:
            raise _Unsupported(f"reference to dropped value {v.name}")
        return Ref(names[v.name])
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple):
        return [_value(x, names, bad) for x in v]
    if isinstance(v, torch.dtype):
        return DType(_dtype(v))
    if isinstance(v, torch.device):
        return Device(v.type)
    if isinstance(v, torch.layout):
        return Layout(str(v).removeprefix("torch."))
    if isinstance(v, torch.memory_format):
        return MemoryFormat(str(v).removeprefix("torch."))
    raise _Unsupported(type(v).__name__)
