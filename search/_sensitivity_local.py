"""Sensitivity from layer-local quantities: one forward and one backward pass, no per-pair forward.

:func:`~search._sensitivity.measure_sensitivity` runs the whole model once per
(layer, choice); this estimates the same damage (:meth:`Evaluator.damage
<search._evaluator.Evaluator.damage>`) from what each layer sees, HAWQ/GPTQ-style.
Quantizing layer ``l`` perturbs its output ``y`` (``[rows, C_out]``, a conv's
rows being its output positions) by ``dy``. To second order the damage is
``D = 1/2 dy^T G dy``, ``G`` the damage's curvature with respect to ``y``: the
Gauss-Newton matrix ``J^T M J`` (``J = dz/dy``, ``z`` the model output), exact at
the float model, where the damage and its gradient are zero. ``M`` is
``diag(p) - p p^T`` per row of the softmax ``p`` for the KL damage (averaged over
rows), ``2 I / |z|^2`` for the noise-to-signal ratio.

One backward pass per calibration batch of ``z . v`` with ``v = B e`` (``e`` a
seeded standard normal, ``B B^T = M``: ``B = (I - p 1^T) diag(sqrt p)`` for KL,
``B = I`` with weight ``1 / |z|^2`` for NSR) gives output gradients ``g`` with
``E[g g^T] = G``. Keeping its diagonal and assuming ``g`` independent of the
layer's input ``x`` gives, per output channel ``c``, the Fisher weight
``F_c = kappa sum_rows g[r, c]^2`` (``kappa = 1/2`` per KL row mean, ``1/|z|^2``
for NSR, averaged over batches), and the estimate::

    d(l, choice) = sum_c F_c (dW S dW^T)[c, c] + sum_c F_c (s^2 / 12) |Q[c]|^2

- ``dW = Q - W``: the weight as the engine quantizes it for that choice (format,
  scale rule, outliers, GPTQ with the engine's input Hessians) minus the float
  (BN-folded) weight, as a matrix ``[C_out, n]`` (conv: ``[C_out, C_in/groups * prod(k)]``).
- ``S = H / 2 = X^T X / m``: the layer's mean input outer product over the
  calibration batches, from the engine's GPTQ Hessian ``H`` (im2col patches for
  conv, one per conv group: rows of group ``g`` use the ``g``-th). Embeddings:
  ``S = diag(count_row / m)``, the share of lookups of each row, so only rows used count.
- The second term is the activation format's: an ``aN`` input rounds with step
  ``s`` (the engine's calibrated scale for that layer), uniform noise of variance
  ``s^2 / 12`` per input, seen through the quantized weight ``Q``. Clipping of
  calibration inputs is not counted (none under ``minmax`` calibration); float
  activations add nothing. Bias correction is not modelled (search choices never ask for it).

Cost: one calibration pass (the engine's, shared with GPTQ), one forward and one
backward over ``batches`` calibration batches, then per pair a weight quantization
and a ``[C_out, n] x [n, n]`` product -- no model forward. ``fp32`` gives 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx

from engine.ir import CONV_OPS, EMBEDDING_OPS, MATMUL_OPS, IRModel, Node, to_graph_module
from engine.quant import LayerFormat, QuantizedWeight, QuantPlan
from engine.transforms import LayerInfo, fold_batch_norm, weight_is_transposed
from search._evaluator import CLASSIFICATION, Evaluator
from search._sensitivity import Sensitivity, cache_key, read_cache, write_cache
from search._space import SearchSpace, parse_choice

__all__ = ["LayerCurvature", "layer_curvature", "measure_sensitivity_local"]


@dataclass(frozen=True)
class LayerCurvature:
    """What one layer's estimate needs.

    Attributes:
        fisher: ``F_c`` per output channel, float64 ``[C_out]``.
        second_moments: ``S = X^T X / m`` per conv group (float64 ``[n, n]``); for
            an embedding one ``[rows]`` vector, the share of lookups of each row.
    """

    fisher: torch.Tensor
    second_moments: list[torch.Tensor]


def measure_sensitivity_local(
    ev: Evaluator,
    space: SearchSpace,
    *,
    batches: int = 2,
    seed: int = 0,
    cache_file: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    known: Mapping[str, float] | None = None,
) -> Sensitivity:
    """Estimated damage of every (layer, choice) of ``space`` (formula in the module doc).

    Same keys and units as :func:`~search._sensitivity.measure_sensitivity`; the
    quantized weights land in ``ev.cache`` for the trials that follow. With
    ``cache_file``, a table holding every pair is read back instead of measured (the
    shared forward/backward pass is the cost, so a partial table is measured whole),
    and what was measured is added to the file. ``known`` values (by ``cache_key``) are
    taken as measured (reused from an earlier model version, :mod:`search._layer_cache`):
    the shared pass still runs when any pair is missing, but only missing pairs are
    quantized and estimated.
    """
    todo = [(layer, key) for layer in ev.layers for key in ev.choices(space, layer.name)]
    cached = read_cache(cache_file)
    keys = [cache_key(layer.name, key, space.scale) for layer, key in todo]
    given = cached | dict(known or {})
    out: Sensitivity = {layer.name: {} for layer in ev.layers}
    if keys and all(k in given for k in keys):
        for (layer, key), ck in zip(todo, keys, strict=True):
            out[layer.name][key] = given[ck]
        return out
    missing = [(x, k) for (x, k), ck in zip(todo, keys, strict=True) if ck not in given]
    measured = _measure(ev, space, missing, batches=batches, seed=seed, progress=progress)
    for (layer, key), ck in zip(todo, keys, strict=True):
        value = given[ck] if ck in given else measured[layer.name][key]
        out[layer.name][key] = cached[ck] = value
    write_cache(cache_file, cached)
    return out


def _measure(
    ev: Evaluator,
    space: SearchSpace,
    todo: list[tuple[LayerInfo, str]],
    *,
    batches: int,
    seed: int,
    progress: Callable[[int, int], None] | None,
) -> Sensitivity:
    """The estimate of every pair in ``todo``."""
    curv = layer_curvature(ev, batches=batches, seed=seed)
    folded, _ = fold_batch_norm(ev.ir)
    nodes = {n.name: n for n in folded.nodes}
    steps = _activation_steps(ev, space)
    out: Sensitivity = {layer.name: {} for layer in ev.layers}
    filled: set[str] = set()
    for i, (layer, key) in enumerate(todo):
        fmt = parse_choice(key, scale=space.scale)
        w = _matrix_weight(folded, nodes[layer.node], layer)
        if layer.name not in filled:  # every format of the layer at once (stacked GPTQ)
            mine = [parse_choice(k, scale=space.scale) for x, k in todo if x is layer]
            ev.cache.quantized_many(layer.name, mine, w)
            filled.add(layer.name)
        q = _quantized(ev, layer, fmt, w)
        c = curv[layer.name]
        dw = (q.values.double() - w.double()).reshape(w.shape[0], -1)
        if layer.name in ev.embeddings:
            err = (dw.square() * c.second_moments[0][:, None]).sum(0)  # per output dim
        else:
            err = _grouped_quadratic(dw, c.second_moments)
        d = float((c.fisher * err).sum())
        step = steps.get((layer.name, fmt.activation))
        if step is not None:
            qm = q.values.double().reshape(w.shape[0], -1)
            d += float((c.fisher * qm.square().sum(1)).sum()) * step**2 / 12.0
        out[layer.name][key] = max(d, 0.0)
        if progress is not None:
            progress(i + 1, len(todo))
    return out


def layer_curvature(ev: Evaluator, *, batches: int = 2, seed: int = 0) -> dict[str, LayerCurvature]:
    """Per layer, its Fisher weights and input second moments (module doc).

    The input Hessians come from the engine's calibration (every non-embedding
    layer is made a Hessian layer of ``ev.cache``); the Fisher weights from one
    forward and backward pass over the first ``batches`` calibration batches.
    """
    wanted = {x.name for x in ev.layers if x.name not in ev.embeddings}
    if not wanted <= ev.cache.hessian_layers:
        ev.cache.hessian_layers |= wanted
        ev.cache.stats = None  # recalibrate once, now with every Hessian
    ev.quantize(QuantPlan({x.name: LayerFormat("fp32") for x in ev.layers}))
    stats = ev.cache.stats
    assert stats is not None
    folded, _ = fold_batch_norm(ev.ir)
    fisher, counts = _fisher(ev, folded, batches=batches, seed=seed)
    out: dict[str, LayerCurvature] = {}
    for layer in ev.layers:
        if layer.name in ev.embeddings:
            cnt = counts[layer.name]
            moments = [cnt / max(float(cnt.sum()), 1.0)]
        else:
            hs = stats[layer.name].hessians
            assert hs is not None
            moments = [h / 2.0 for h in hs]
        out[layer.name] = LayerCurvature(fisher[layer.name], moments)
    return out


def _fisher(
    ev: Evaluator, folded: IRModel, *, batches: int, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``F_c`` per layer and, for embeddings, lookups per row, over the first ``batches``."""
    by_node = {x.node: x for x in ev.layers}
    nodes = {n.name: n for n in folded.nodes}
    probes: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}

    class _Probe(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            layer = by_node.get(n.meta.get("mpq_name", ""))
            if layer is None or n.op != "call_function":
                return result
            if layer.name in ev.embeddings:
                args, _ = self.fetch_args_kwargs_from_env(n)
                idx, rows = args[1], layer.weight_shape[0]
                c = torch.bincount(idx.reshape(-1).long(), minlength=rows).double()
                counts[layer.name] = counts.get(layer.name, torch.zeros(rows).double()) + c
            # a zero leaf added to the output: its gradient is the output's, and
            # gradients keep flowing to the layers before
            z = torch.zeros_like(result, requires_grad=True)
            probes[layer.name] = z
            return result + z

    gm = to_graph_module(folded)
    gen = torch.Generator().manual_seed(seed)
    fisher = {x.name: torch.zeros(_out_channels(x, nodes), dtype=torch.float64) for x in ev.layers}
    used = ev.calibration[: max(1, batches)]
    for t in used:
        probes.clear()
        with torch.enable_grad():
            z = _Probe(gm).run(*t)
            v, kappa = _probe_direction(ev, z.detach(), gen)
            grads = torch.autograd.grad((z * v).sum(), list(probes.values()), allow_unused=True)
        for (name, _), g in zip(probes.items(), grads, strict=True):
            if g is None:
                continue
            layer = next(x for x in ev.layers if x.name == name)
            dim = _channel_dim(layer, nodes[layer.node])
            sq = g.double().square().movedim(dim, -1).reshape(-1, g.shape[dim]).sum(0)
            fisher[name] += kappa * sq / len(used)
    return fisher, counts


def _probe_direction(
    ev: Evaluator, z: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, float]:
    """``v = B e`` and ``kappa`` (module doc) for one batch's float output ``z``."""
    e = torch.randn(z.shape, generator=gen, dtype=torch.float64)
    if ev.metric in CLASSIFICATION:
        p = torch.softmax(z.double(), dim=-1)
        se = p.sqrt() * e
        v = se - p * se.sum(-1, keepdim=True)
        rows = z.numel() // z.shape[-1]
        return v.to(z.dtype), 0.5 / rows
    return e.to(z.dtype), 1.0 / float(z.double().square().sum())


def _channel_dim(layer: LayerInfo, node: Node) -> int:
    """The output dimension that indexes the weight matrix's rows."""
    if node.op in CONV_OPS:
        return 1
    if node.op in MATMUL_OPS and not weight_is_transposed(node, layer.weight):
        return -2  # W @ x: rows of W are rows of the output
    return -1


def _out_channels(layer: LayerInfo, nodes: dict[str, Node]) -> int:
    node = nodes[layer.node]
    shape = layer.weight_shape
    if node.op in EMBEDDING_OPS:
        return shape[-1]
    if weight_is_transposed(node, layer.weight):
        return shape[-1]
    return shape[0] if node.op in CONV_OPS or len(shape) == 2 else shape[-2]


def _matrix_weight(folded: IRModel, node: Node, layer: LayerInfo) -> torch.Tensor:
    """The folded weight as the engine quantizes it (output channel first)."""
    w = folded.tensors[layer.weight]
    return w.T if weight_is_transposed(node, layer.weight) else w


def _quantized(
    ev: Evaluator, layer: LayerInfo, fmt: LayerFormat, w: torch.Tensor
) -> QuantizedWeight:
    """The layer's weight in ``fmt``, from or into ``ev.cache`` (as the engine would)."""
    return ev.cache.quantized(layer.name, fmt, w)


def _grouped_quadratic(dw: torch.Tensor, moments: list[torch.Tensor]) -> torch.Tensor:
    """``diag(dW S_g dW^T)`` per row, rows of group ``g`` with ``S_g``."""
    per = dw.shape[0] // len(moments)
    parts = [
        ((dw[g * per : (g + 1) * per] @ s) * dw[g * per : (g + 1) * per]).sum(1)
        for g, s in enumerate(moments)
    ]
    return torch.cat(parts)


def _activation_steps(ev: Evaluator, space: SearchSpace) -> dict[tuple[str, str], float]:
    """(layer, activation format) -> the engine's input scale, one ``apply`` per format."""
    out: dict[tuple[str, str], float] = {}
    for act in space.activations:
        if act == "float":
            continue
        plan = QuantPlan({x.name: LayerFormat("fp32", activation=act) for x in ev.layers})
        qm = ev.quantize(plan)
        for name, qp in qm.activations.items():
            out[(name, act)] = float(qp.scale)
    return out
