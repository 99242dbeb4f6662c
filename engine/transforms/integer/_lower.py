"""Lowering a quantized model to integer steps: which op runs how, at which qparams.

Every value of the simulated graph is, in the integer model, one of: integer
codes with per-tensor qparams (``q``), a float tensor (``f``), or other data --
token ids, masks, shapes (``i``). Walking the graph in order:

- an activation fake-quant node quantizes a float value (the model entry, or
  the exit of a float island) or re-expresses codes at its qparams;
- a quantized layer (conv, linear, ``x @ W``) with integer weights and quantized
  input runs :mod:`engine.transforms.integer._kernels` on codes; an embedding with integer
  weights gathers codes;
- add/sub of two code tensors (or of codes and a float island's output,
  quantized at ``BOUNDARY_BITS`` on its observed range: the residual add after
  a LayerNorm -- unless that range is ``SWAMP_RATIO`` times the codes', as for an
  attention mask of ``finfo.min``, when the add stays float), activation matmul,
  average pools and means, concatenation run integer kernels; reshapes, max pools,
  padding (the pad value's code: real 0 is the zero point), ReLU and clamps act on
  codes with unchanged qparams; multiplying by a positive constant changes only the
  scale;
- any other op computes in float on dequantized inputs: a *float island*,
  listed in the report (moving float data -- reshapes, transposes, padding the model's
  float input before its entry quantization -- is not arithmetic and is not listed).

Output qparams of an integer op that changes scale: follow its output through
ops that keep qparams (reshape, ReLU, max pool, ...); if the chain ends at a
fake-quant node, use that node's qparams (the next layer reads the codes as
they are, the ReLU is a clamp at ``z``); otherwise asymmetric qparams from the
observed range of the chain's last value: ``MATMUL_OPERAND_BITS`` (8) bits
for operands of an activation-by-activation matmul, ``internal_bits`` (16)
elsewhere. The plan's activation bits govern what the quantized layers read;
tensors that the simulated model never rounds (a layer output entering a
residual add, a LayerNorm or the model output) are kept at 16 bits, as
integer-only BERTs keep their residual stream wide (measured on MiniLM int8:
cosine to fp32 0.956 when those tensors are rounded to 8 bits, 0.993 at 16
bits, the simulated model 0.993). Their observed range is widened
``INTERNAL_HEADROOM`` times first: the simulated model, in float, does not clip them
where new data leaves the calibration range, so the integer model must not either.

Size: one file (just over 300 lines): the analysis is one pass over the graph whose
op tables, per-node steps and bit-width assignment refer to each other throughout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.errors import InvalidPlanError
from engine.ir import CONV_OPS, EMBEDDING_OPS, IRModel, Node, Ref, infer_meta
from engine.transforms._apply import FAKE_QUANT_OP, QuantizedModel, weight_is_transposed
from engine.transforms._calibrate import activation_index
from engine.transforms.integer._dyadic import QSpec, qspec_for_range
from engine.transforms.integer._layers import (
    IntWeight,
    accumulator_bounds,
    fit_int32_bias,
    int_bias,
    integer_weight,
)

__all__ = ["PAD_OPS", "Step", "analyse"]

IDENTITY_OPS = frozenset(
    "aten." + o
    for o in (
        "dropout.default", "clone.default", "contiguous.default", "alias.default",
        "detach.default", "lift_fresh_copy.default",
    )
)  # fmt: skip
SHAPE_OPS = frozenset(
    "aten." + o
    for o in (
        "view.default", "reshape.default", "_unsafe_view.default", "flatten.using_ints",
        "permute.default", "transpose.int", "t.default", "unsqueeze.default", "squeeze.dim",
        "squeeze.dims", "squeeze.default", "expand.default", "slice.Tensor", "select.int",
        "unflatten.int",
    )
)  # fmt: skip
CLAMP_OPS = frozenset(
    {"aten.relu.default", "aten.hardtanh.default", "aten.clamp.default", "aten.clamp_min.default"}
)
MAXPOOL_OPS = frozenset({"aten.max_pool1d.default", "aten.max_pool2d.default"})
PAD_OPS = frozenset({"aten.pad.default", "aten.constant_pad_nd.default"})
"""Padding on codes: the pad value's code (real 0 is the zero point ``z``, not code 0;
reflect/replicate copy codes), qparams unchanged -- TF-style "same" padding (``ZeroPad2d``
before a conv) stays integer."""
KEEP_QPARAMS = IDENTITY_OPS | SHAPE_OPS | CLAMP_OPS | MAXPOOL_OPS | PAD_OPS
ADD_OPS = frozenset({"aten.add.Tensor", "aten.sub.Tensor"})
SCALE_OPS = frozenset({"aten.mul.Tensor", "aten.mul.Scalar", "aten.div.Tensor", "aten.div.Scalar"})
ACT_MATMUL_OPS = frozenset({"aten.matmul.default", "aten.bmm.default", "aten.mm.default"})
MEAN_OPS = frozenset(
    {"aten.adaptive_avg_pool2d.default", "aten.avg_pool2d.default", "aten.mean.dim"}
)
LINEAR_LIKE = frozenset({"aten.linear.default", "aten.addmm.default", "aten.mm.default"})
BOUNDARY_BITS = 16
"""Bits at which a float island's output is quantized where an integer add reads it."""
INTERNAL_HEADROOM = 4.0
"""How many times its observed range a 16-bit tensor covers (2 of its 16 bits). On
EfficientNet-Lite2 the residual stream of 128 evaluation crops reaches 1.3x the range of
64 calibration crops; clipped there at the observed range, the integer model's top-1
differed from the simulated model's on 4 of 128 crops."""
MATMUL_OPERAND_BITS = 8
"""Bits of activations multiplied together (keeps ``K * 255^2`` well inside int32)."""
_NEEDS_TARGET = {"layer", "embed", "add", "matmul", "mean", "cat"}


@dataclass
class Step:
    """How one node runs in the integer model.

    ``kind``: ``fq`` (quantize / re-express), ``layer``, ``embed``, ``keep`` (codes,
    same qparams), ``add``, ``scale``, ``matmul``, ``mean``, ``cat`` or ``float``.
    """

    kind: str
    target: QSpec | None = None
    weight: IntWeight | None = None
    bias_i: torch.Tensor | None = None
    layer: str | None = None
    acc_bound: int = 0
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def analyse(
    qm: QuantizedModel, *, internal_bits: int
) -> tuple[dict[str, Step], dict[str, str], dict[str, tuple[str, str]]]:
    """Steps per node, the value domains, and per-layer ``(status, reason)``."""
    ir = qm.ir
    probe = _probe(ir)
    domain: dict[str, str] = {
        s.name: ("f" if s.dtype.startswith("float") else "i") for s in ir.inputs
    }
    domain.update({t: "c" for t in ir.tensors})
    layers = {layer.node: layer for layer in qm.layers}
    steps: dict[str, Step] = {}
    layer_status: dict[str, tuple[str, str]] = {}
    for n in ir.nodes:
        refs = [a for a in _refs(n.args) if a.name in domain]
        q_in = [r for r in refs if domain[r.name] == "q"]
        first_q = bool(n.args) and isinstance(n.args[0], Ref) and domain.get(n.args[0].name) == "q"
        step: Step
        if n.op == FAKE_QUANT_OP:
            _, scale, zp, qmin, qmax = n.args
            step = Step("fq", QSpec(float(scale), int(zp), int(qmin), int(qmax)))  # type: ignore[arg-type]
        elif n.name in layers:
            step = _layer_step(qm, n, layers[n.name].name, domain)
            layer_status[layers[n.name].name] = (
                "integer" if step.kind != "float" else "float",
                step.reason,
            )
        elif first_q and len(q_in) == 1 and n.op in KEEP_QPARAMS:
            step = Step("keep")
        elif n.op in ADD_OPS and len(q_in) >= 1 and len(refs) == 2 == len(n.args):
            step = Step("add", extra={"sign": 1 if n.op == "aten.add.Tensor" else -1})
            floats = [
                i for i, r in enumerate(refs) if domain[r.name] == "f" and r.name in qm.ranges
            ]
            if len(q_in) + len(floats) < 2:
                step = Step("float", reason="no integer kernel")
            elif _swamps(qm, [refs[i].name for i in floats], [r.name for r in q_in]):
                step = Step("float", reason="an operand's range swamps the other's")
            for i in floats if step.kind == "add" else ():  # quantize a float island's output
                lo, hi = qm.ranges[refs[i].name]
                step.extra[f"quantize_{i}"] = _wide_spec(lo, hi, BOUNDARY_BITS)
        elif n.op in SCALE_OPS and first_q and len(refs) == 1 and _positive(n.args[1:2]):
            c = float(n.args[1])  # type: ignore[arg-type]
            step = Step("scale", extra={"factor": c if "mul" in n.op else 1.0 / c})
        elif n.op in ACT_MATMUL_OPS and len(q_in) == 2 == len(refs):
            step = Step("matmul")
        elif n.op in MEAN_OPS and first_q and len(refs) == 1 and _mean_ok(n, probe):
            step = Step("mean")
        elif n.op == "aten.cat.default" and q_in and len(q_in) == len(refs):
            step = Step("cat")
        else:
            floating = probe.get(n.name, False)
            reason = "no integer kernel" if q_in else "float op"
            moves_data = n.op in IDENTITY_OPS | SHAPE_OPS | PAD_OPS and not q_in
            step = Step("float", reason=reason if (q_in or floating) and not moves_data else "")
        steps[n.name] = step
        domain[n.name] = "q" if step.kind != "float" else ("f" if probe.get(n.name) else "i")
    _assign_targets(qm, steps, internal_bits)
    return steps, domain, layer_status


def _layer_step(qm: QuantizedModel, n: Node, name: str, domain: Mapping[str, str]) -> Step:
    layer = next(x for x in qm.layers if x.name == name)
    q = qm.weights[name]
    w = integer_weight(q)
    if w is None:
        return Step("float", reason=f"{q.fmt.weight} weights", layer=name)
    if n.op in EMBEDDING_OPS:
        if w.group_size is not None:
            return Step("float", reason="grouped scales on a lookup table", layer=name)
        return Step("embed", weight=w, layer=name)
    idx = activation_index(n, layer.weight)
    x_spec_q = qm.activations.get(name)
    if idx is None or x_spec_q is None:
        return Step("float", reason="float input activation", layer=name)
    src = n.args[idx]
    if not (isinstance(src, Ref) and domain.get(src.name) == "q"):
        return Step("float", reason="input is not quantized", layer=name)
    transposed = weight_is_transposed(n, layer.weight)
    if n.op not in CONV_OPS and n.op not in LINEAR_LIKE and not (transposed and idx == 0):
        return Step("float", reason=f"{n.op} with a stored operand first", layer=name)
    if w.group_size is not None and n.op in CONV_OPS:
        return Step("float", reason="grouped scales on a conv", layer=name)
    x_spec = QSpec(float(x_spec_q.scale), int(x_spec_q.zero_point), x_spec_q.qmin, x_spec_q.qmax)
    bias_ref = (
        n.args[0] if n.op == "aten.addmm.default" else (n.args[2] if len(n.args) > 2 else None)
    )
    bias = qm.ir.tensors[bias_ref.name] if isinstance(bias_ref, Ref) else None
    bias_i = None
    if bias is not None and w.group_size is None:
        w = fit_int32_bias(w, x_spec, bias)
        bias_i = int_bias(bias, x_spec, w)
    bounds = accumulator_bounds(w, x_spec, bias_i)
    step = Step("layer", weight=w, bias_i=bias_i, layer=name, acc_bound=int(bounds.max()))
    step.extra.update(x_spec=x_spec, input_index=idx, bias=bias, acc_bounds=bounds)
    return step


def _assign_targets(qm: QuantizedModel, steps: dict[str, Step], internal_bits: int) -> None:
    users = _users(qm.ir)
    for name, step in steps.items():
        if step.kind not in _NEEDS_TARGET:
            continue
        end = name
        while len(users[end]) == 1 and _kind(steps, users[end][0]) == "keep":
            end = users[end][0]
        nxt = users[end]
        if len(nxt) == 1 and _kind(steps, nxt[0]) == "fq":
            step.target = steps[nxt[0]].target
            continue
        if end not in qm.ranges:
            raise InvalidPlanError(
                f"no observed range for {end!r}: this quantized model carries no calibration "
                "ranges; quantize it again with this MPQ (mpq quantize) to run it integer-only"
            )
        lo, hi = qm.ranges[end]
        to_matmul = all(_kind(steps, u) == "matmul" for u in nxt)
        if to_matmul:
            step.target = qspec_for_range(lo, hi, MATMUL_OPERAND_BITS)
        else:
            step.target = _wide_spec(lo, hi, internal_bits)


def _wide_spec(lo: float, hi: float, bits: int) -> QSpec:
    """Qparams for a tensor the simulated model keeps in float: ``INTERNAL_HEADROOM`` times
    its observed range ``[lo, hi]`` (widened around 0, so a ReLU output stays unsigned)."""
    return qspec_for_range(lo * INTERNAL_HEADROOM, hi * INTERNAL_HEADROOM, bits)


SWAMP_RATIO = 256.0
"""A float operand whose observed range is this many times the code operand's keeps the add
in float: at 16 bits the sum would leave the code operand under 8 bits of resolution (an
attention mask of ``finfo.min`` added to attention scores would leave it none)."""


def _swamps(qm: QuantizedModel, floats: Sequence[str], codes: Sequence[str]) -> bool:
    widths = [qm.ranges[c][1] - qm.ranges[c][0] for c in codes if c in qm.ranges]
    if not widths or not floats:
        return False
    width = max(widths)
    return any(qm.ranges[f][1] - qm.ranges[f][0] > SWAMP_RATIO * width for f in floats)


def _kind(steps: Mapping[str, Step], name: str) -> str:
    step = steps.get(name)  # "<output>" has no step
    return step.kind if step is not None else "output"


def _users(ir: IRModel) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {n.name: [] for n in ir.nodes}
    for n in ir.nodes:
        for r in _refs((*n.args, *n.kwargs.values())):
            if r.name in users and n.name not in users[r.name]:
                users[r.name].append(n.name)
    for r in ir.outputs:
        users[r.name].append("<output>")
    return users


def _refs(values: Sequence[Any]) -> Iterator[Ref]:
    for v in values:
        if isinstance(v, Ref):
            yield v
        elif isinstance(v, list | tuple):
            yield from _refs(v)


def _positive(args: Sequence[Any]) -> bool:
    return (
        bool(args)
        and isinstance(args[0], int | float)
        and not isinstance(args[0], bool)
        and args[0] > 0
    )


def _mean_ok(n: Node, probe: Mapping[str, Any]) -> bool:
    """Average pools whose windows all hold the same count of real inputs."""
    if n.op == "aten.mean.dim":
        return True
    shape = probe.get(f"{n.name}:in")
    if n.op == "aten.adaptive_avg_pool2d.default":
        out = n.args[1]
        return (
            isinstance(shape, tuple)
            and isinstance(out, list)
            and all(s % o == 0 for s, o in zip(shape[-2:], out, strict=True))
        )
    pad = n.args[3] if len(n.args) > 3 else 0
    ceil = n.args[4] if len(n.args) > 4 else False
    include = n.args[5] if len(n.args) > 5 else True
    divisor = n.args[6] if len(n.args) > 6 else None
    no_pad = pad in (0, [0, 0], [0])
    return not ceil and divisor is None and (no_pad or bool(include))


def _probe(ir: IRModel) -> dict[str, Any]:
    """From a meta-device pass (no arithmetic): which nodes output floating tensors, and
    the shape of each node's first operand (``"<node>:in"``)."""
    meta = infer_meta(ir)
    shapes = {s.name: tuple(s.shape) for s in ir.inputs}
    shapes |= {k: tuple(t.shape) for k, t in ir.tensors.items()}
    shapes |= {k: shape for k, (shape, _) in meta.items()}
    out: dict[str, Any] = {k: dtype.is_floating_point for k, (_, dtype) in meta.items()}
    for n in ir.nodes:
        first = n.args[0] if n.args else None
        if isinstance(first, Ref) and first.name in shapes:
            out[f"{n.name}:in"] = shapes[first.name]
    return out


def acc_bits(bound: int) -> int:
    """Bits of a signed integer that holds ``[-bound, bound]``."""
    return max(1, math.ceil(math.log2(bound + 1))) + 1
