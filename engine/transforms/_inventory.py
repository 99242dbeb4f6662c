"""Layer inventory: what in a model can be quantized, and what it costs.

For each quantizable layer -- conv1d/conv2d (incl. grouped and depthwise),
linear, matmul/mm/bmm with a stored-tensor operand, embedding -- the inventory
gives a stable name, the op, the weight shape, parameter count, MACs per example
(one sample of the batch: the graph at batch 1 when it runs at any batch, else the
exported batch's MACs divided by that batch), and whether a foldable batch norm
follows. MACs:

- conv: ``numel(out) * (C_in / groups) * prod(kernel)``;
- linear / matmul: ``numel(out) * K`` (K = the contracted dimension);
- embedding: 0 (a lookup, no multiply-accumulates).

A layer's stable name is its weight tensor's name without ``.weight``
(``features.0``) -- the module path for torch exports -- or the node name when
the weight is shared or named otherwise.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from engine.ir import (
    CONV_OPS,
    EMBEDDING_OPS,
    LINEAR_OPS,
    MATMUL_OPS,
    QUANTIZABLE_OPS,
    IRModel,
    Node,
    Ref,
    infer_shapes,
)
from engine.transforms._fold import fold_batch_norm

__all__ = ["Inventory", "LayerInfo", "inventory"]


@dataclass(frozen=True)
class LayerInfo:
    """One quantizable layer."""

    name: str
    node: str
    op: str
    kind: str
    weight: str
    weight_shape: tuple[int, ...]
    params: int
    macs: int
    bn_follows: bool
    """A batch norm directly follows and can be folded into this layer."""


@dataclass(frozen=True)
class Inventory:
    """Every quantizable layer plus totals and a summary of the other ops."""

    inputs: tuple[tuple[str, tuple[int, ...], str], ...]
    layers: tuple[LayerInfo, ...]
    other_ops: dict[str, int]
    total_params: int
    layer_params: int
    float_bytes: int
    total_macs: int
    unfoldable_bn: dict[str, str]
    fixed_batch: int | None = None
    """The one batch the model runs at, or None when it runs at any batch."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; each input as ``{"name", "shape", "dtype"}``."""
        out = asdict(self)
        out["inputs"] = [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.inputs]
        return out


def inventory(model: IRModel) -> Inventory:
    """Inventory of ``model`` (shapes from a meta-device run on its input specs)."""
    fixed = None if model.batch is not None else model.batch_size
    shapes = infer_shapes(model.at_batch(1) if model.batch is not None else model)
    per_example = fixed or 1
    users = model.users()
    _, report = fold_batch_norm(model)
    folded_layers = {layer for layer, _ in report.folded}
    layers: list[LayerInfo] = []
    other: Counter[str] = Counter()
    for n in model.nodes:
        weight = _weight_operand(n, model) if n.op in QUANTIZABLE_OPS else None
        if weight is None:
            other[_short(n.op)] += 1
            continue
        w_shape = tuple(model.tensors[weight].shape)
        name = weight.removesuffix(".weight")
        if not weight.endswith(".weight") or len(users.get(weight, [])) > 1:
            name = n.name
        layers.append(
            LayerInfo(
                name=name,
                node=n.name,
                op=n.op,
                kind=_kind(n, w_shape),
                weight=weight,
                weight_shape=w_shape,
                params=math.prod(w_shape) + _bias_params(n, model),
                macs=_macs(n, weight, w_shape, shapes.get(n.name, ())) // per_example,
                bn_follows=n.name in folded_layers,
            )
        )
    float_tensors = [t for t in model.tensors.values() if t.is_floating_point()]
    return Inventory(
        inputs=tuple((s.name, s.shape, s.dtype) for s in model.inputs),
        layers=tuple(layers),
        other_ops=dict(sorted(other.items())),
        total_params=sum(t.numel() for t in float_tensors),
        layer_params=sum(layer.params for layer in layers),
        float_bytes=sum(t.numel() * t.element_size() for t in model.tensors.values()),
        total_macs=sum(layer.macs for layer in layers),
        unfoldable_bn={k: v for k, v in report.unfolded.items()},
        fixed_batch=fixed,
    )


def _weight_operand(n: Node, model: IRModel) -> str | None:
    """Name of the stored-tensor weight of a quantizable node, or None."""
    if n.op in CONV_OPS or n.op == "aten.linear.default":
        idx = 1
    elif n.op == "aten.addmm.default":
        idx = 2
    elif n.op in EMBEDDING_OPS:
        idx = 0
    elif n.op in MATMUL_OPS:
        refs = [a.name for a in n.args[:2] if isinstance(a, Ref) and a.name in model.tensors]
        return refs[-1] if refs else None
    else:
        return None
    v = n.args[idx] if len(n.args) > idx else None
    return v.name if isinstance(v, Ref) and v.name in model.tensors else None


def _kind(n: Node, w_shape: tuple[int, ...]) -> str:
    short = _short(n.op)
    if n.op in CONV_OPS:
        groups = n.args[6] if len(n.args) > 6 else n.kwargs.get("groups", 1)
        if isinstance(groups, int) and groups > 1:
            return f"{short} depthwise" if w_shape[1] == 1 else f"{short} grouped({groups})"
    if n.op in LINEAR_OPS:
        return "linear"
    return short


def _macs(n: Node, weight: str, w_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> int:
    if n.op in EMBEDDING_OPS or not out_shape:
        return 0
    out = math.prod(out_shape)
    if n.op in CONV_OPS:
        return out * math.prod(w_shape[1:])
    if n.op == "aten.linear.default":
        return out * w_shape[-1]
    if n.op in MATMUL_OPS and n.args and n.args[0] == Ref(weight):
        return out * w_shape[-1]  # W @ x: W is [..., M, K]
    return out * w_shape[-2]  # x @ W: W is [..., K, N] (addmm, mm, matmul)


def _bias_params(n: Node, model: IRModel) -> int:
    idx = 0 if n.op == "aten.addmm.default" else 2
    if n.op not in CONV_OPS | {"aten.linear.default", "aten.addmm.default"}:
        return 0
    v = n.args[idx] if len(n.args) > idx else n.kwargs.get("bias")
    return model.tensors[v.name].numel() if isinstance(v, Ref) and v.name in model.tensors else 0


def _short(op: str) -> str:
    return op.split(".")[1] if op.startswith("aten.") else op
