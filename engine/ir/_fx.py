"""Turning an IR into a runnable ``torch.fx.GraphModule``, and shape inference.

The conversion only ever calls :func:`engine.ir.resolve` on allow-listed op
names and wraps data: nothing from the IR is evaluated as code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import fx

from engine.ir._model import IRModel
from engine.ir._ops import resolve
from engine.ir._values import Device, DType, Layout, MemoryFormat, Ref, Value

__all__ = ["bind", "infer_meta", "infer_shapes", "to_graph_module"]


def to_graph_module(model: IRModel) -> fx.GraphModule:
    """Build a GraphModule computing ``model``; inputs are positional in IR order.

    Tensors become buffers named ``t_<i>_<name with dots as underscores>``:
    flat, prefixed names that cannot shadow a Module attribute (``forward``,
    ``training``) or reach fx's generated code unescaped. A single output is
    returned bare, several as a tuple.
    """
    graph = fx.Graph()
    env: dict[str, fx.Node] = {}
    for spec in model.inputs:
        env[spec.name] = graph.placeholder(_ident(spec.name))
    attrs: dict[str, torch.Tensor] = {}
    for i, (name, tensor) in enumerate(model.tensors.items()):
        attr = f"t_{i}_{_ident(name)}"
        attrs[attr] = tensor
        env[name] = graph.get_attr(attr)
    for n in model.nodes:
        args = tuple(bind(a, env) for a in n.args)
        kwargs = {k: bind(v, env) for k, v in n.kwargs.items()}
        node = graph.create_node("call_function", resolve(n.op), args, kwargs, _ident(n.name))
        node.meta["mpq_name"] = n.name
        env[n.name] = node
    outs = [env[r.name] for r in model.outputs]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    gm = fx.GraphModule(attrs, graph)
    gm.eval()
    return gm


_FAKE_QUANT = "aten.fake_quantize_per_tensor_affine.default"


def infer_meta(model: IRModel) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Shape and dtype of every tensor-valued node output, from a run on the meta device.

    Meta tensors carry shapes and dtypes only, so this costs no arithmetic.
    Activation fake-quant (no meta kernel in torch) passes its input's metadata through.
    """
    graph_module = to_graph_module(model)
    inputs = [torch.empty(s.shape, dtype=DType(s.dtype).torch, device="meta") for s in model.inputs]
    meta: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    fake_quant = resolve(_FAKE_QUANT)

    class _Recorder(fx.Interpreter):
        def run_node(self, node: fx.Node) -> Any:
            if node.op == "get_attr":
                return super().run_node(node).to("meta")
            if node.op != "call_function":
                return super().run_node(node)
            args, kwargs = self.fetch_args_kwargs_from_env(node)
            # ops that move data to "cpu" (aten.to.device, factories) must stay on meta
            args, kwargs = fx.node.map_aggregate((args, kwargs), _on_meta)
            fq = node.target is fake_quant
            out = args[0] if fq else node.target(*args, **kwargs)  # type: ignore[operator]
            if "mpq_name" in node.meta and isinstance(out, torch.Tensor):
                meta[node.meta["mpq_name"]] = (tuple(out.shape), out.dtype)
            return out

    with torch.no_grad():
        _Recorder(graph_module).run(*inputs)
    return meta


def infer_shapes(model: IRModel) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor-valued node output (:func:`infer_meta` without dtypes)."""
    return {name: shape for name, (shape, _) in infer_meta(model).items()}


def _on_meta(v: Any) -> Any:
    return torch.device("meta") if isinstance(v, torch.device) else v


def bind(v: Value, env: Mapping[str, Any]) -> Any:
    """An IR argument with its references looked up in ``env`` and IR types made torch's."""
    if isinstance(v, Ref):
        return env[v.name]
    if isinstance(v, list):
        return [bind(x, env) for x in v]
    if isinstance(v, DType):
        return v.torch
    if isinstance(v, Device):
        return torch.device(v.name)
    if isinstance(v, Layout):
        return torch.strided
    if isinstance(v, MemoryFormat):
        return getattr(torch, v.name)
    return v


def _ident(name: str) -> str:
    """A Python identifier for an IR name (fx node names must be identifiers)."""
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else "v_" + out
