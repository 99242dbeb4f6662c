"""The integer-only model: runs the lowered steps and reports what ran how.

Size: a little over 300 lines: the report types, the model that runs every step kind
(each a few lines over the kernels) and its trace, which share the step table.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from engine.ir import CONV_OPS, bind, resolve
from engine.transforms._apply import QuantizedModel
from engine.transforms.integer._dyadic import Dyadic, QSpec, dyadic, requantize
from engine.transforms.integer._kernels import (
    QTensor,
    add_int,
    conv_acc,
    exact_int,
    grouped_linear_int,
    linear_acc,
    matmul_int,
    rescale_int,
    sum_pool_int,
)
from engine.transforms.integer._lower import (
    CLAMP_OPS,
    IDENTITY_OPS,
    MAXPOOL_OPS,
    PAD_OPS,
    Step,
    acc_bits,
    analyse,
)

__all__ = ["ROUNDING_RULE", "IntegerModel", "IntegerReport", "lower_to_integer"]

ROUNDING_RULE = (
    "requantization q = clamp(((acc * m + 2^(k-1)) >> k) + z, qmin, qmax) in int64 with a "
    "dyadic multiplier m * 2^-k (m < 2^31): round half up; the simulated model rounds half "
    "to even in float, so the two differ by at most one step"
)


@dataclass(frozen=True)
class LayerReport:
    """One quantizable layer in the integer model."""

    name: str
    execution: Literal["integer", "float"]
    weight: str
    reason: str
    acc_bound: int
    acc_bits: int
    overflows_int32: bool


@dataclass(frozen=True)
class IntegerReport:
    """``integer_only`` is ``full`` when every op between the model's entry and exit
    runs on integers and no accumulator can exceed int32; else ``partial``."""

    integer_only: Literal["full", "partial"]
    islands: dict[str, int]
    island_nodes: tuple[str, ...]
    layers: tuple[LayerReport, ...]
    internal_bits: int
    rounding: str = ROUNDING_RULE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class IntegerModel(nn.Module):
    """Integer-only execution of a :class:`~engine.transforms.QuantizedModel`."""

    def __init__(self, qm: QuantizedModel, steps: dict[str, Step], report: IntegerReport):
        super().__init__()
        self.qm = qm
        self.steps = steps
        self.report = report

    def forward(self, *inputs: torch.Tensor) -> Any:
        env = self._execute(inputs, keep_all=False)
        outs = [_float(env[r.name]) for r in self.qm.ir.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def trace(self, *inputs: torch.Tensor) -> dict[str, Any]:
        """Every node's value (:class:`QTensor` codes or float) for ``inputs``."""
        return self._execute(inputs, keep_all=True)

    def _execute(self, inputs: tuple[torch.Tensor, ...], *, keep_all: bool) -> dict[str, Any]:
        """Run the nodes in order; unless ``keep_all``, drop each value after its last
        reader (int64 codes of a CNN's every activation would otherwise stay alive)."""
        ir = self.qm.ir
        env: dict[str, Any] = dict(zip((s.name for s in ir.inputs), inputs, strict=True))
        env.update(ir.tensors)
        outputs = {r.name for r in ir.outputs}
        last: dict[str, int] = {}
        for i, n in enumerate(ir.nodes):
            for r in n.refs():
                last[r] = i
        with torch.no_grad():
            for i, n in enumerate(ir.nodes):
                env[n.name] = self._run(n, self.steps[n.name], env)
                if keep_all:
                    continue
                for r in set(n.refs()):
                    if last[r] == i and r not in outputs and r not in ir.tensors:
                        del env[r]
        return env

    def _run(self, n: Any, step: Step, env: dict[str, Any]) -> Any:
        args = [bind(a, env) for a in n.args]
        kind = step.kind
        if kind == "float":
            kwargs = {k: _float(bind(v, env)) for k, v in n.kwargs.items()}
            return resolve(n.op)(*[_float(a) for a in args], **kwargs)
        target = step.target
        if kind == "fq":
            assert target is not None
            x = args[0]
            return QTensor(
                rescale_int(x, target) if isinstance(x, QTensor) else target.quantize(x), target
            )
        if kind == "keep":
            return _keep(n.op, args)
        assert target is not None or kind == "scale"
        if kind == "layer":
            return QTensor(_layer(n.op, step, args), target)  # type: ignore[arg-type]
        if kind == "embed":
            return QTensor(_embed(step, args[1]), target)  # type: ignore[arg-type]
        if kind == "add":
            a, b = (_as_q(x, step.extra.get(f"quantize_{i}")) for i, x in enumerate(args[:2]))
            return QTensor(add_int(a, b, target, sign=step.extra["sign"]), target)  # type: ignore[arg-type]
        if kind == "scale":
            x = args[0]
            spec = x.spec
            new = QSpec(spec.scale * step.extra["factor"], spec.zero_point, spec.qmin, spec.qmax)
            return QTensor(x.q, new)
        if kind == "matmul":
            return QTensor(matmul_int(args[0], args[1], target), target)  # type: ignore[arg-type]
        if kind == "mean":
            sums, count = _sums(n.op, args)
            return QTensor(sum_pool_int(args[0], sums, count, target), target)  # type: ignore[arg-type]
        assert kind == "cat"
        parts = [rescale_int(x, target) for x in args[0]]  # type: ignore[arg-type]
        return QTensor(torch.cat(parts, *args[1:]), target)  # type: ignore[arg-type]


def lower_to_integer(qm: QuantizedModel, *, internal_bits: int = 16) -> IntegerModel:
    """Lower a quantized model to integer-only execution (see :mod:`engine.transforms.integer`)."""
    steps, _, status = analyse(qm, internal_bits=internal_bits)
    for step in steps.values():
        if step.kind == "layer":
            _prepare_layer(step)
        elif step.kind == "embed":
            w = step.weight
            assert w is not None and step.target is not None
            rows = w.w_i.reshape(w.w_i.shape[0], -1).abs().amax(-1).double()
            step.extra["dyadic"] = dyadic(
                w.scale / step.target.scale, acc_bound=rows, per_channel=True
            )
    by_layer = {s.layer: s for s in steps.values() if s.layer is not None}
    layers = []
    for layer in qm.layers:
        execution, reason = status.get(layer.name, ("float", "not reached"))
        found = by_layer.get(layer.name)
        weight = found.weight if found is not None else None
        storage = weight.storage if weight is not None else qm.weights[layer.name].fmt.weight
        bound = found.acc_bound if found is not None else 0
        bits = acc_bits(bound) if bound else 0
        kind: Literal["integer", "float"] = "integer" if execution == "integer" else "float"
        layers.append(LayerReport(layer.name, kind, storage, reason, bound, bits, bits > 32))
    island_nodes = tuple(n for n, s in steps.items() if s.kind == "float" and s.reason)
    ops = Counter(_short(next(x.op for x in qm.ir.nodes if x.name == n)) for n in island_nodes)
    full = not island_nodes and not any(r.overflows_int32 for r in layers)
    report = IntegerReport(
        "full" if full else "partial", dict(ops), island_nodes, tuple(layers), internal_bits
    )
    return IntegerModel(qm, steps, report)


def _prepare_layer(step: Step) -> None:
    w, target = step.weight, step.target
    assert w is not None and target is not None
    x_spec: QSpec = step.extra["x_spec"]
    if w.group_size is None:
        mult = x_spec.scale * w.scale / target.scale
        bounds = step.extra["acc_bounds"]
        step.extra["dyadic"] = dyadic(mult, acc_bound=bounds, per_channel=True)


def _layer(op: str, step: Step, args: list[Any]) -> torch.Tensor:
    w = step.weight
    assert w is not None and step.target is not None
    x: QTensor = args[step.extra["input_index"]]
    if w.group_size is not None:
        return grouped_linear_int(
            x, w.w_i, w.scale, step.extra["bias"], step.target, step.acc_bound
        )
    if op in CONV_OPS:
        dims = w.w_i.dim() - 2
        stride = args[3] if len(args) > 3 else [1] * dims
        padding = args[4] if len(args) > 4 else [0] * dims
        dilation = args[5] if len(args) > 5 else [1] * dims
        groups = args[6] if len(args) > 6 else 1
        acc = conv_acc(x, w.w_i, stride=stride, padding=padding, dilation=dilation, groups=groups)
        axis = 1
        if step.bias_i is not None:
            acc = acc + step.bias_i.reshape(-1, *([1] * (acc.dim() - 2)))
    else:
        acc = linear_acc(x, w.w_i.reshape(w.w_i.shape[0], -1))
        axis = -1
        if step.bias_i is not None:
            acc = acc + step.bias_i
    return requantize(acc, step.extra["dyadic"], step.target, axis=axis)


def _embed(step: Step, indices: torch.Tensor) -> torch.Tensor:
    w = step.weight
    assert w is not None and step.target is not None
    d: Dyadic = step.extra["dyadic"]
    idx = indices.long()
    assert isinstance(d.shift, torch.Tensor)
    rows = Dyadic(d.m[idx].unsqueeze(-1), d.shift[idx].unsqueeze(-1))
    return requantize(w.w_i[idx], rows, step.target)


def _keep(op: str, args: list[Any]) -> QTensor:
    x: QTensor = args[0]
    spec = x.spec
    if op in IDENTITY_OPS:
        return x
    if op in MAXPOOL_OPS:
        return QTensor(exact_int(resolve(op)(x.q.double(), *args[1:])), spec)
    if op in PAD_OPS:
        return QTensor(_pad(op, x, args), spec)
    if op in CLAMP_OPS:
        lo, hi = _clamp_bounds(op, args)
        q_lo = spec.qmin if lo is None else max(spec.qmin, int(spec.quantize(torch.tensor(lo))))
        q_hi = spec.qmax if hi is None else min(spec.qmax, int(spec.quantize(torch.tensor(hi))))
        return QTensor(x.q.clamp(q_lo, q_hi), spec)
    return QTensor(resolve(op)(x.q, *args[1:]), spec)


def _pad(op: str, x: QTensor, args: list[Any]) -> torch.Tensor:
    """Pad codes; a constant pad inserts the code of its real value (0 -> ``z``)."""
    pad = args[1]
    if op == "aten.constant_pad_nd.default":
        mode, value = "constant", args[2] if len(args) > 2 else 0.0
    else:
        mode = args[2] if len(args) > 2 else "constant"
        value = args[3] if len(args) > 3 and args[3] is not None else 0.0
    if mode != "constant":  # reflect / replicate / circular copy codes (float64: exact)
        return exact_int(torch.nn.functional.pad(x.q.double(), pad, mode))
    code = int(x.spec.quantize(torch.tensor(float(value))))
    return torch.nn.functional.pad(x.q, pad, "constant", code)


def _clamp_bounds(op: str, args: list[Any]) -> tuple[float | None, float | None]:
    if op == "aten.relu.default":
        return 0.0, None
    if op == "aten.hardtanh.default":
        return (args[1] if len(args) > 1 else -1.0), (args[2] if len(args) > 2 else 1.0)
    if op == "aten.clamp_min.default":
        return args[1], None
    return (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else None)


def _sums(op: str, args: list[Any]) -> tuple[torch.Tensor, int]:
    x: QTensor = args[0]
    off = x.offset()
    if op == "aten.mean.dim":
        dims = args[1] if isinstance(args[1], list) else [args[1]]
        keep = bool(args[2]) if len(args) > 2 else False
        count = math.prod(off.shape[d] for d in dims)
        return exact_int(off.sum(dims, keepdim=keep)), count
    if op == "aten.adaptive_avg_pool2d.default":
        kh, kw = (s // o for s, o in zip(off.shape[-2:], args[1], strict=True))
        sums = torch.nn.functional.avg_pool2d(off, (kh, kw), (kh, kw), divisor_override=1)
        return exact_int(sums), kh * kw
    kernel = args[1]
    kh, kw = (kernel * 2)[:2] if len(kernel) == 1 else kernel
    stride = args[2] if len(args) > 2 and args[2] else kernel
    padding = args[3] if len(args) > 3 else 0
    sums = torch.nn.functional.avg_pool2d(off, kernel, stride, padding, divisor_override=1)
    return exact_int(sums), kh * kw


def _as_q(x: Any, spec: QSpec | None) -> QTensor:
    """``x`` as codes: already codes, or a float tensor quantized with ``spec``."""
    if isinstance(x, QTensor):
        return x
    assert spec is not None
    return QTensor(spec.quantize(x), spec)


def _float(v: Any) -> Any:
    if isinstance(v, QTensor):
        return v.dequantize()
    if isinstance(v, list):
        return [_float(x) for x in v]
    return v


def _short(op: str) -> str:
    return op.split(".")[1] if op.startswith("aten.") else op
