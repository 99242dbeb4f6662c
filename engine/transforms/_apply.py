"""Applying a :class:`~engine.quant.QuantPlan` to a model: simulated quantization.

``apply(model, plan, calibration)``:

1. folds batch norm (the folded weights are what gets quantized);
2. runs the float model over the calibration batches (:mod:`engine.transforms._calibrate`)
   for activation ranges and, where a layer rounds with GPTQ, input Hessians;
3. quantizes each layer's weight to its format (:mod:`engine.quant._weights`; GPTQ
   needs the layer's input Hessian, so embeddings round to nearest) --
   cached per (layer, format) in a :class:`WeightCache`, so re-applying a plan
   that differs in one layer costs one layer;
4. where a layer's format asks for ``bias_correction`` and the layer stores a
   bias, corrects it (:mod:`engine.transforms._bias_correction`: ``b' = b - (Q - W) E[x]``)
   so rounding leaves the mean output on the calibration data unchanged;
5. returns a new IR whose weights are the fake-quantized values and in which each
   layer's input passes through ``fake_quantize_per_tensor_affine`` with the
   calibrated qparams (asymmetric, per tensor).

The result computes in float what the quantized model computes: simulated
("fake") quantization.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import fx

from engine.errors import InvalidPlanError
from engine.ir import MATMUL_OPS, IRModel, Node, Ref, to_graph_module
from engine.quant import (
    AffineQParams,
    LayerFormat,
    QuantizedWeight,
    QuantPlan,
    Ranges,
    choose_qparams_affine,
    observe_ranges,
    quantize_weights,
)
from engine.transforms._bias_correction import bias_operand, corrected_bias
from engine.transforms._calibrate import LayerStats, activation_index, calibrate
from engine.transforms._exact import deterministic_module
from engine.transforms._fold import fold_batch_norm
from engine.transforms._inventory import LayerInfo, inventory

__all__ = ["FAKE_QUANT_OP", "QuantizedModel", "WeightCache", "apply", "weight_is_transposed"]

FAKE_QUANT_OP = "aten.fake_quantize_per_tensor_affine.default"
PERCENTILE = 99.99


@dataclass
class WeightCache:
    """Quantized weights and calibration of one (model, calibration data) pair.

    Valid only for the model and calibration batches it was first used with.
    """

    weights: dict[tuple[str, LayerFormat], QuantizedWeight] = field(default_factory=dict)
    stats: dict[str, LayerStats] | None = None
    hessian_layers: set[str] = field(default_factory=set)
    ranges: Ranges | None = None

    def quantized(self, name: str, fmt: LayerFormat, w: torch.Tensor) -> QuantizedWeight:
        """Layer ``name``'s weight ``w`` (output channel first) in ``fmt``, quantized once.

        The weight does not depend on the activation format or bias correction, so
        formats that differ only there share one entry; both roundings of one weight
        format share its qparams (the MSE scale search or k-means runs once). A layer
        without an input Hessian (a lookup table) rounds ``gptq`` to nearest. Needs
        :attr:`stats` (what :func:`apply` calibrates).
        """
        return self.quantized_many(name, [fmt], w)[0]

    def quantized_many(
        self, name: str, fmts: Sequence[LayerFormat], w: torch.Tensor
    ) -> list[QuantizedWeight]:
        """:meth:`quantized` of each of ``fmts``; those not cached yet are quantized
        together (:func:`~engine.quant.quantize_weights`: GPTQ formats in one pass),
        round-to-nearest ones first so that GPTQ takes their qparams."""
        assert self.stats is not None, "calibrate before quantizing weights"
        hessians = self.stats[name].hessians
        todo: dict[LayerFormat, list[LayerFormat]] = {}  # format quantized -> cache keys
        for fmt in fmts:
            key = _weight_only(fmt)
            if (name, key) in self.weights:
                continue
            quantized = key
            if hessians is None and not key.is_float:  # GPTQ degrades to nearest here
                quantized = replace(key, rounding="nearest")
                if (name, quantized) in self.weights:
                    self.weights[(name, key)] = self.weights[(name, quantized)]
                    continue
            keys = todo.setdefault(quantized, [])
            if key not in keys:
                keys.append(key)
        for nearest in (True, False):
            batch = [f for f in todo if (f.rounding == "nearest") == nearest]
            if not batch:
                continue
            qparams = [None if f.is_float else self._sibling_qparams(name, f) for f in batch]
            done = quantize_weights(w, batch, hessians=hessians, qparams=qparams)
            for f, q in zip(batch, done, strict=True):
                for key in todo[f]:
                    self.weights[(name, key)] = q
        return [_as(self.weights[(name, _weight_only(f))], f) for f in fmts]

    def _sibling_qparams(self, name: str, fmt: LayerFormat) -> object | None:
        """The qparams of ``fmt``'s weight format with the other rounding, if cached."""
        other = replace(fmt, rounding="gptq" if fmt.rounding == "nearest" else "nearest")
        sibling = self.weights.get((name, other))
        return None if sibling is None else sibling.qparams


def _as(q: QuantizedWeight, fmt: LayerFormat) -> QuantizedWeight:
    """The cached weight ``q`` labelled with the layer's own format (its activation and bias
    correction; the rounding it was quantized with), sharing its tensors."""
    target = replace(fmt, rounding=q.fmt.rounding)
    return q if q.fmt == target else replace(q, fmt=target)


def _weight_only(fmt: LayerFormat) -> LayerFormat:
    """``fmt`` with what does not change the quantized weight set to its default."""
    return replace(fmt, activation="float", bias_correction=False)


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """A model with a plan applied (simulated quantization).

    Attributes:
        ir: the simulated model (folded, fake-quantized weights, input fake-quant).
        plan: the plan applied.
        layers: the quantizable layers of the folded model.
        weights: layer name -> its quantized weight (codes and qparams).
        activations: layer name -> its input's qparams (layers with quantized inputs).
        ranges: node name -> (min, max) of its float output on the calibration data
            (:mod:`engine.quant._observe`), for integer-only execution.
    """

    ir: IRModel
    plan: QuantPlan
    layers: tuple[LayerInfo, ...]
    weights: dict[str, QuantizedWeight]
    activations: dict[str, AffineQParams]
    ranges: Ranges = field(default_factory=dict)

    def module(self, *, exact: bool = True) -> fx.GraphModule:
        """A runnable GraphModule of the simulated model, the same at any thread count.

        Its layers sum in float64, exactly where their input is fake-quantized
        (:func:`~engine.transforms.deterministic_module`). ``exact=False`` gives the plain
        float32 graph instead, 3-5x faster and equal up to float rounding, whose order (and
        so a rounding decision on a marginal sample) may depend on the thread count: the
        search's trials use it; every figure reported to a user comes from the exact one.
        """
        return deterministic_module(self.ir) if exact else to_graph_module(self.ir)


def apply(
    model: IRModel,
    plan: QuantPlan,
    calibration: Iterable[Sequence[torch.Tensor]],
    *,
    cache: WeightCache | None = None,
) -> QuantizedModel:
    """Fold, calibrate, quantize weights and insert activation fake-quant.

    Args:
        model: the float model's IR.
        plan: one format per quantizable layer (names as ``mpq inspect`` lists them).
        calibration: batches of model inputs (each a sequence, one tensor per input).
        cache: reuse of weights and calibration across calls on the same model/data.

    Raises:
        InvalidPlanError: the plan's layers are not the model's.
    """
    folded, _ = fold_batch_norm(model)
    layers = inventory(folded).layers
    plan.check_layers(layer.name for layer in layers)
    nodes = {n.name: n for n in folded.nodes}
    _check_groups(plan, layers, nodes)
    cache = cache if cache is not None else WeightCache()
    gptq = {name for name, fmt in plan.layers.items() if fmt.rounding == "gptq"}
    if cache.stats is None or cache.ranges is None or not gptq <= cache.hessian_layers:
        batches = list(calibration)
        cache.hessian_layers |= gptq
        cache.stats = calibrate(folded, layers, batches, hessian_layers=cache.hessian_layers)
        cache.ranges = observe_ranges(folded, batches)
    stats = cache.stats
    users = folded.users()
    tensors = dict(folded.tensors)
    weights: dict[str, QuantizedWeight] = {}
    activations: dict[str, AffineQParams] = {}
    for layer in layers:
        fmt = plan.layers[layer.name]
        transposed = weight_is_transposed(nodes[layer.node], layer.weight)
        w = folded.tensors[layer.weight]
        w = w.T if transposed else w
        q = cache.quantized(layer.name, fmt, w)
        weights[layer.name] = q
        tensors[layer.weight] = q.values.T.contiguous() if transposed else q.values
        b, means = _own_bias(nodes[layer.node], users, tensors), stats[layer.name].means
        if fmt.bias_correction and b is not None and means is not None:
            tensors[b] = corrected_bias(tensors[b], w, q.values, means)
        bits = fmt.activation_bits
        if bits is not None and activation_index(nodes[layer.node], layer.weight) is not None:
            activations[layer.name] = _activation_qparams(stats[layer.name], bits, plan)
    ir = _insert_fake_quant(folded, layers, tensors, activations)
    return QuantizedModel(ir, plan, tuple(layers), weights, activations, dict(cache.ranges))


def _check_groups(plan: QuantPlan, layers: Sequence[LayerInfo], nodes: dict[str, Node]) -> None:
    """Refuse grouped formats whose group size does not divide a layer's inputs."""
    for layer in layers:
        group = plan.layers[layer.name].group_size
        shape = layer.weight_shape
        if weight_is_transposed(nodes[layer.node], layer.weight):
            inputs = shape[-2]  # stored [K, N]: K inputs per output
        else:
            inputs = math.prod(shape[1:])
        if group is not None and inputs % group:
            raise InvalidPlanError(
                f"layer {layer.name!r} has {inputs} inputs per output channel, which groups of "
                f"{group} do not divide; use a per-channel format (e.g. int4) for this layer"
            )


def _own_bias(
    node: Node, users: dict[str, list[str]], tensors: dict[str, torch.Tensor]
) -> str | None:
    """The layer's stored 1-D bias if no other node reads it (else correcting it is unsafe)."""
    b = bias_operand(node)
    if b is None or users.get(b) != [node.name] or tensors[b].dim() != 1:
        return None
    return b


def weight_is_transposed(node: Node, weight: str) -> bool:
    """True where the stored weight is ``[in, out]`` (``x @ W``, addmm)."""
    if node.op == "aten.addmm.default":
        return True
    if node.op in MATMUL_OPS:
        return not (node.args and node.args[0] == Ref(weight))
    return False


def _activation_qparams(s: LayerStats, bits: int, plan: QuantPlan) -> AffineQParams:
    if plan.calibration == "minmax":
        x = torch.tensor([s.lo, s.hi])
        return choose_qparams_affine(x, bits=bits, symmetric=False)
    sample = s.values()
    if plan.calibration == "percentile":
        lo = torch.quantile(sample.double(), 1 - PERCENTILE / 100).float()
        hi = torch.quantile(sample.double(), PERCENTILE / 100).float()
        return choose_qparams_affine(torch.stack([lo, hi]), bits=bits, symmetric=False)
    return choose_qparams_affine(sample, bits=bits, symmetric=False, method="mse")


def _insert_fake_quant(
    folded: IRModel,
    layers: Sequence[LayerInfo],
    tensors: dict[str, torch.Tensor],
    activations: dict[str, AffineQParams],
) -> IRModel:
    by_node = {layer.node: layer for layer in layers}
    out: list[Node] = []
    for n in folded.nodes:
        layer = by_node.get(n.name)
        if layer is not None and layer.name in activations:
            idx = activation_index(n, layer.weight)
            assert idx is not None
            qp = activations[layer.name]
            fq = Node(
                f"{n.name}_input_fq",
                FAKE_QUANT_OP,
                (n.args[idx], float(qp.scale), int(qp.zero_point), qp.qmin, qp.qmax),
            )
            out.append(fq)
            args = list(n.args)
            args[idx] = Ref(fq.name)
            n = Node(n.name, n.op, tuple(args), n.kwargs)
        out.append(n)
    return IRModel(
        folded.inputs, tuple(out), folded.outputs, tensors, folded.output_specs, batch=folded.batch
    )
