"""Calibration: statistics of every quantizable layer's input over calibration batches.

One pass of the float model over the calibration inputs records, for each
layer's activation input, its min/max and a bounded random sample (for
percentile and MSE calibration), the mean input row ``E[x] = 1^T X / m`` (for
bias correction), and, for layers that round with GPTQ, the input Hessian
``H = 2 X^T X / m``. ``X`` (``[m, n]``) is the layer seen as a matrix product:
its rows are a linear layer's input vectors, or a conv's im2col patches (one
``E[x]`` and one Hessian per conv group, computed for all groups at once: a depthwise
conv has hundreds).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx

from engine.ir import CONV_OPS, EMBEDDING_OPS, MATMUL_OPS, IRModel, Node, to_graph_module
from engine.transforms._inventory import LayerInfo

__all__ = ["LayerStats", "activation_index", "calibrate"]

SAMPLE_SIZE = 1 << 18
PATCH_BYTES = 1 << 28
"""Most bytes of float64 im2col patches built at once (a batch is cut by images)."""


@dataclass
class LayerStats:
    """Running statistics of one layer's input."""

    lo: float = float("inf")
    hi: float = float("-inf")
    sample: list[torch.Tensor] = field(default_factory=list)
    hessians: list[torch.Tensor] | None = None
    means: list[torch.Tensor] | None = None
    """Per conv group, the mean input row ``E[x]`` (float64 ``[n]``); None for embeddings."""
    rows: int = 0

    def values(self) -> torch.Tensor:
        """The sampled input values (at most about ``SAMPLE_SIZE``), flat float32."""
        return torch.cat(self.sample) if self.sample else torch.zeros(1)


def activation_index(node: Node, weight: str) -> int | None:
    """Position of the activation operand of a layer node; None for embeddings."""
    if node.op in EMBEDDING_OPS:
        return None
    if node.op == "aten.addmm.default":
        return 1
    if node.op in MATMUL_OPS:
        first = node.args[0]
        return 1 if getattr(first, "name", None) == weight else 0
    return 0


def calibrate(
    model: IRModel,
    layers: Sequence[LayerInfo],
    batches: Iterable[Sequence[torch.Tensor]],
    *,
    hessian_layers: set[str],
    seed: int = 0,
) -> dict[str, LayerStats]:
    """Run ``model`` over ``batches`` and collect :class:`LayerStats` per layer name."""
    by_node = {layer.node: layer for layer in layers}
    nodes = {n.name: n for n in model.nodes}
    stats = {layer.name: LayerStats() for layer in layers}
    gen = torch.Generator().manual_seed(seed)

    grams: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # this batch's X^T X per input

    class _Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            name = n.meta.get("mpq_name")
            if name in by_node and n.op == "call_function":
                layer = by_node[name]
                args, _ = self.fetch_args_kwargs_from_env(n)
                idx = activation_index(nodes[name], layer.weight)
                if idx is not None:
                    _record(stats[layer.name], args[idx].detach(), gen)
                    _mean(stats[layer.name], nodes[name], args, idx)
                    if layer.name in hessian_layers:
                        _hessian(stats[layer.name], nodes[name], args, grams)
            return super().run_node(n)

    recorder = _Recorder(to_graph_module(model))
    with torch.no_grad():
        for batch in batches:
            recorder.run(*batch)
            grams.clear()
    for s in stats.values():
        if s.hessians is not None:
            s.hessians = [h / max(s.rows, 1) for h in s.hessians]
        if s.means is not None:
            s.means = [m / max(s.rows, 1) for m in s.means]
    return stats


def _record(s: LayerStats, x: torch.Tensor, gen: torch.Generator) -> None:
    flat = x.float().reshape(-1)
    s.lo, s.hi = min(s.lo, float(flat.min())), max(s.hi, float(flat.max()))
    take = min(flat.numel(), SAMPLE_SIZE // 8)
    idx = torch.randint(flat.numel(), (take,), generator=gen)
    s.sample.append(flat[idx])
    if sum(t.numel() for t in s.sample) > SAMPLE_SIZE:
        keep = torch.cat(s.sample)
        s.sample = [keep[torch.randperm(keep.numel(), generator=gen)[:SAMPLE_SIZE]]]


def _mean(s: LayerStats, node: Node, args: Sequence[Any], idx: int) -> None:
    """Add the column sums ``1^T X`` of this batch (per conv group) and count its rows.

    im2col is linear, so a conv's patch sums are those of the batch-summed input
    ``sum_b x_b`` (one image's patches): no per-image patches are built.
    """
    x = args[idx].detach().double()
    if node.op in CONV_OPS:
        groups = int(args[6]) if len(args) > 6 else 1
        cols = _unfold(x.sum(0, keepdim=True), args[1], args)  # [1, C * kk, L]
        sums = list(cols.sum((0, 2)).reshape(groups, -1))
        rows = x.shape[0] * cols.shape[2]
    else:
        sums, rows = [x.reshape(-1, x.shape[-1]).sum(0)], x.numel() // x.shape[-1]
    if s.means is None:
        s.means = [torch.zeros_like(t) for t in sums]
    for m, t in zip(s.means, sums, strict=True):
        m += t
    s.rows += rows


def _hessian(
    s: LayerStats,
    node: Node,
    args: Sequence[Any],
    grams: dict[int, tuple[torch.Tensor, torch.Tensor]],
) -> None:
    """Add ``2 X^T X`` of this batch (per conv group); :func:`_mean` counts the rows.

    Layers reading one tensor (a transformer's query, key and value projections) share
    its product: ``grams`` holds this batch's, keyed by the input tensor's identity.
    """
    x = args[0]
    if node.op in CONV_OPS:
        products = list(_conv_grams(x.double(), args))
    else:
        hit = grams.get(id(x))
        if hit is None or hit[0] is not x:
            p = x.double().reshape(-1, x.shape[-1])
            hit = grams[id(x)] = (x, p.T @ p)
        products = [hit[1]]
    if s.hessians is None:
        s.hessians = [torch.zeros_like(g) for g in products]
    for h, g in zip(s.hessians, products, strict=True):
        h += 2.0 * g


def _conv_grams(x: torch.Tensor, args: Sequence[Any]) -> torch.Tensor:
    """``X_g^T X_g`` of every conv group ``g`` (``[G, n, n]``), ``X_g`` its im2col patches.

    All groups in one batched product, the batch cut by images so that at most about
    ``PATCH_BYTES`` of patches exist at once.
    """
    groups = int(args[6]) if len(args) > 6 else 1
    first = _unfold(x[:1], args[1], args)  # [1, C * kk, L]
    per_image = first.numel() * first.element_size()
    step = max(1, PATCH_BYTES // max(per_image, 1))
    n = first.shape[1] // groups
    out = torch.zeros(groups, n, n, dtype=torch.float64)
    for start in range(0, x.shape[0], step):
        cols = (
            first if start == 0 and step == 1 else _unfold(x[start : start + step], args[1], args)
        )
        # X_g^T X_g = sum over images i of P_ig P_ig^T, P_ig = cols[i, g*n:(g+1)*n] ([n, L])
        p = cols.reshape(-1, n, cols.shape[2])  # [N * G, n, L], no copy
        out += (p @ p.transpose(1, 2)).reshape(cols.shape[0], groups, n, n).sum(0)
    return out


def _unfold(x: torch.Tensor, weight: torch.Tensor, args: Sequence[Any]) -> torch.Tensor:
    """im2col of a conv input: ``[N, C * prod(k), L]``, channel-major (``c * prod(k) + i``)."""
    k = tuple(weight.shape[2:])
    if all(d == 1 for d in k) and _is_plain(args, len(k)):
        return x.reshape(x.shape[0], x.shape[1], -1)  # a 1x1 conv's patches are its input
    one_d = len(k) == 1
    stride = _pair(args[3] if len(args) > 3 else 1, len(k))
    dilation = _pair(args[5] if len(args) > 5 else 1, len(k))
    padding_arg = args[4] if len(args) > 4 else 0
    if isinstance(padding_arg, str):
        if padding_arg == "same":
            padding = tuple(d * (kk - 1) // 2 for d, kk in zip(dilation, k, strict=True))
        else:
            padding = (0,) * len(k)
    else:
        padding = _pair(padding_arg, len(k))
    if one_d:
        x, k = x.unsqueeze(-1), (k[0], 1)
        stride, dilation, padding = (stride[0], 1), (dilation[0], 1), (padding[0], 0)
    return F.unfold(x, k, dilation=dilation, padding=padding, stride=stride)


def _is_plain(args: Sequence[Any], dims: int) -> bool:
    """Stride 1 and no padding (a string padding of a 1x1 kernel adds none either)."""
    stride = _pair(args[3] if len(args) > 3 else 1, dims)
    padding = args[4] if len(args) > 4 else 0
    no_pad = isinstance(padding, str) or all(p == 0 for p in _pair(padding, dims))
    return all(st == 1 for st in stride) and no_pad


def _pair(v: Any, n: int) -> tuple[int, ...]:
    if isinstance(v, list | tuple):
        return tuple(int(a) for a in v) if len(v) == n else tuple(int(v[0]) for _ in range(n))
    return tuple(int(v) for _ in range(n))
