"""Batch-norm folding: exact, pure, copying.

In inference a batch norm is the per-channel affine map
``z = c * y + d`` with ``c = gamma / sqrt(var + eps)`` and ``d = beta - c * mean``.
When ``y = W x + b`` comes from a conv or linear layer whose output feeds only
that batch norm, the pair equals one layer with

    W'[j] = c[j] * W[j]        b'[j] = c[j] * b[j] + d[j]

(``j`` indexes output channels, dim 0 of the weight for conv1d/conv2d -- also
grouped and depthwise -- and for linear). A missing conv bias is ``b = 0``.
The arithmetic runs in float64 and is cast back, so folded and unfolded models
agree to float rounding. Folding must happen before quantization: the folded
weights are the ones that get quantized.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from engine.errors import TrainingModeError
from engine.ir import CONV_OPS, IRModel, Node, Ref, Value, infer_shapes

__all__ = ["FOLD_PATTERNS", "FoldReport", "fold_batch_norm", "fold_bn_weights"]

BN_OP = "aten.batch_norm.default"

FOLD_PATTERNS: tuple[tuple[str, str], ...] = (
    *((conv, BN_OP) for conv in sorted(CONV_OPS)),
    ("aten.linear.default", BN_OP),
)
"""(producer op, batch-norm op) pairs that fold. Linear folds only for 2-D outputs."""


@dataclass(frozen=True)
class FoldReport:
    """What :func:`fold_batch_norm` did: folded pairs and batch norms left in place."""

    folded: tuple[tuple[str, str], ...] = ()
    """(layer node, batch-norm node) pairs that were folded."""
    unfolded: dict[str, str] = field(default_factory=dict)
    """batch-norm node -> why it could not be folded."""


def fold_bn_weights(
    w: torch.Tensor,
    b: torch.Tensor | None,
    mean: torch.Tensor,
    var: torch.Tensor,
    eps: float,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold a batch norm into the layer before it; return ``(W', b')``.

    Args:
        w: weight ``[C_out, ...]`` (conv ``[C_out, C_in/groups, *k]``, linear ``[C_out, C_in]``).
        b: bias ``[C_out]`` or None (treated as zeros).
        mean, var: running statistics ``[C_out]``.
        eps: the batch norm's epsilon.
        gamma, beta: affine parameters ``[C_out]``, or None (1 and 0).

    Returns:
        ``W' = c[:, None, ...] * W`` and ``b' = c * (b - mean) + beta`` with
        ``c = gamma / sqrt(var + eps)``, in ``w``'s dtype. Inputs are not modified.
    """
    c_out = w.shape[0]
    for name, t in (("b", b), ("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)):
        if t is not None and t.shape != (c_out,):
            raise ValueError(f"{name} has shape {tuple(t.shape)}; expected ({c_out},)")
    f64 = torch.float64
    g = gamma.to(f64) if gamma is not None else torch.ones(c_out, dtype=f64)
    be = beta.to(f64) if beta is not None else torch.zeros(c_out, dtype=f64)
    bias = b.to(f64) if b is not None else torch.zeros(c_out, dtype=f64)
    c = g / torch.sqrt(var.to(f64) + eps)
    w_folded = w.to(f64) * c.reshape(-1, *([1] * (w.dim() - 1)))
    b_folded = c * (bias - mean.to(f64)) + be
    return w_folded.to(w.dtype), b_folded.to(w.dtype)


def fold_batch_norm(model: IRModel) -> tuple[IRModel, FoldReport]:
    """Fold every batch norm that directly follows a conv/linear; return a new model.

    A batch norm folds when its input is the output of a conv1d/conv2d (any
    groups) or a 2-D linear, that output has no other reader, and the layer's
    weight, bias and the batch norm's parameters are stored tensors. Other
    batch norms stay and are listed in the report. ``model`` is not modified.

    Raises:
        TrainingModeError: a batch norm runs in training mode (its statistics
            would change with every batch, so there is nothing fixed to fold).
    """
    for n in model.nodes:
        if n.op == BN_OP and _arg(n, 5, "training") is True:
            raise TrainingModeError(
                f"batch norm {n.name!r} is in training mode; export the model after model.eval()"
            )
    users = model.users()
    producers = {n.name: n for n in model.nodes}
    shapes: dict[str, tuple[int, ...]] | None = None
    tensors = dict(model.tensors)
    replace: dict[str, Node] = {}
    drop: dict[str, str] = {}  # batch-norm node -> layer node that absorbs it
    unfolded: dict[str, str] = {}
    for bn in (n for n in model.nodes if n.op == BN_OP):
        layer = _producer(bn, producers)
        why = _why_not(bn, layer, users, model)
        if why is None and layer is not None and layer.op == "aten.linear.default":
            shapes = shapes if shapes is not None else infer_shapes(model)
            if len(shapes.get(layer.name, ())) != 2:
                why = "its linear layer's output is not 2-D (batch norm would act on another dim)"
        if why is not None or layer is None:
            unfolded[bn.name] = why or "no producer"
            continue
        w_name, b_name = _tensor_ref(layer, 1, "weight"), _tensor_ref(layer, 2, "bias")
        assert w_name is not None
        w_new, b_new = fold_bn_weights(
            tensors[w_name],
            tensors[b_name] if b_name else None,
            tensors[_tensor_ref(bn, 3, "running_mean") or ""],
            tensors[_tensor_ref(bn, 4, "running_var") or ""],
            float(_arg(bn, 7, "eps")),  # type: ignore[arg-type]
            tensors[g] if (g := _tensor_ref(bn, 1, "weight")) else None,
            tensors[be] if (be := _tensor_ref(bn, 2, "bias")) else None,
        )
        sole = [layer.name]
        new_w = w_name if users.get(w_name) == sole else _fresh(f"{layer.name}.weight", model)
        base = w_name.removesuffix(".weight") if w_name.endswith(".weight") else layer.name
        new_b = b_name if b_name and users.get(b_name) == sole else _fresh(f"{base}.bias", model)
        tensors[new_w], tensors[new_b] = w_new, b_new
        replace[layer.name] = _with_weights(layer, new_w, new_b)
        drop[bn.name] = layer.name
    nodes = tuple(_rewire(replace.get(n.name, n), drop) for n in model.nodes if n.name not in drop)
    outputs = tuple(Ref(drop.get(r.name, r.name)) for r in model.outputs)
    result = IRModel(model.inputs, nodes, outputs, tensors, model.output_specs, batch=model.batch)
    result = result.without_unused_tensors()
    return result, FoldReport(tuple((layer, bn) for bn, layer in drop.items()), unfolded)


def _why_not(
    bn: Node, layer: Node | None, users: dict[str, list[str]], model: IRModel
) -> str | None:
    if layer is None:
        return "its input is not produced by a layer (a model input or tensor)"
    if (layer.op, BN_OP) not in FOLD_PATTERNS:
        return f"it follows {layer.op}, not a conv or linear layer"
    if users.get(layer.name) != [bn.name]:
        return f"the output of {layer.name!r} is also read by other nodes"
    if _tensor_ref(layer, 1, "weight") not in model.tensors:
        return f"the weight of {layer.name!r} is computed, not a stored tensor"
    bias = _arg(layer, 2, "bias")
    if bias is not None and _tensor_ref(layer, 2, "bias") not in model.tensors:
        return f"the bias of {layer.name!r} is computed, not a stored tensor"
    for i, key in ((3, "running_mean"), (4, "running_var")):
        if _tensor_ref(bn, i, key) not in model.tensors:
            return f"its {key} is not a stored tensor"
    for i, key in ((1, "weight"), (2, "bias")):
        if _arg(bn, i, key) is not None and _tensor_ref(bn, i, key) not in model.tensors:
            return f"its {key} is not a stored tensor"
    return None


def _producer(bn: Node, producers: dict[str, Node]) -> Node | None:
    x = _arg(bn, 0, "input")
    return producers.get(x.name) if isinstance(x, Ref) else None


def _arg(n: Node, index: int, key: str) -> Value:
    return n.args[index] if len(n.args) > index else n.kwargs.get(key)


def _tensor_ref(n: Node, index: int, key: str) -> str | None:
    v = _arg(n, index, key)
    return v.name if isinstance(v, Ref) else None


def _with_weights(layer: Node, w: str, b: str) -> Node:
    args = list(layer.args)
    kwargs = dict(layer.kwargs)
    args[1] = Ref(w)
    if len(args) > 2:
        args[2] = Ref(b)
    elif "bias" in kwargs or len(args) < 2:
        kwargs["bias"] = Ref(b)
    else:
        args.append(Ref(b))
    return Node(layer.name, layer.op, tuple(args), kwargs)


def _rewire(n: Node, drop: dict[str, str]) -> Node:
    if not drop:
        return n

    def sub(v: Value) -> Value:
        if isinstance(v, Ref) and v.name in drop:
            return Ref(drop[v.name])
        if isinstance(v, list):
            return [sub(x) for x in v]
        return v

    kwargs = {k: sub(v) for k, v in n.kwargs.items()}
    return Node(n.name, n.op, tuple(sub(a) for a in n.args), kwargs)


def _fresh(name: str, model: IRModel) -> str:
    taken = set(model.tensors) | {n.name for n in model.nodes} | {s.name for s in model.inputs}
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    return out
