"""Every integer node of a lowered model against its simulated twin: the float op on the
integer model's own (dequantized) inputs, quantized to the node's qparams. Within one step.

Covers the kernels as the lowering wires them: conv (incl. depthwise) + ReLU clamps, max and
adaptive-average pools, flatten, linear, embedding lookups, residual add and sub, activation
matmul, scaling by a constant, mean, concatenation, hardtanh, 1-D max pool.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from engine.io.importers import exported_program_to_ir
from engine.ir import bind, resolve
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, inventory
from engine.transforms.integer import QTensor, lower_to_integer


class _Mixed(nn.Module):
    """Embedding, linear, residual add/sub, activation matmul, scale, mean, cat, pools."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.pos = nn.Embedding(8, 16)
        self.q = nn.Linear(16, 16)
        self.k = nn.Linear(16, 16)
        self.out = nn.Linear(32, 6)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids) + self.pos(torch.arange(8))
        q, k = self.q(x), self.k(x)
        scores = torch.matmul(q, k.transpose(1, 2)) * 0.25  # [B, 8, 8]
        mixed = torch.matmul(scores, k) - q  # [B, 8, 16]
        pooled = nn.functional.max_pool1d(mixed.transpose(1, 2), 2)  # [B, 16, 4]
        feats = torch.cat([pooled.mean(-1), nn.functional.hardtanh(x.mean(1))], dim=-1)
        return self.out(feats)


def _check_twins(im: Any, inputs: list[torch.Tensor]) -> int:
    env = im.trace(*inputs)
    layers = {layer.node for layer in im.qm.layers}
    checked = 0
    for n in im.qm.ir.nodes:
        v, step = env[n.name], im.steps[n.name]
        if not isinstance(v, QTensor) or step.kind == "fq":
            continue
        args = [_deq(bind(a, env)) for a in n.args]
        kwargs = {k: _deq(bind(a, env)) for k, a in n.kwargs.items()}
        if n.name in layers and step.bias_i is not None:
            # the bias lives on the int32 grid of scale s_x * s_w (Jacob et al. 2018): the
            # twin adds that bias, in float64 so its own rounding stays far below a step
            assert step.weight is not None
            args = [a.double() if isinstance(a, torch.Tensor) else a for a in args]
            args[2] = step.bias_i.double() * step.extra["x_spec"].scale * step.weight.scale
        real = resolve(n.op)(*args, **kwargs)
        want = v.spec.quantize(real)
        diff = int((v.q - want).abs().max())
        assert diff <= 1, f"{n.name} ({n.op}, {step.kind}): {diff} steps from its twin"
        checked += 1
    return checked


def _deq(v: Any) -> Any:
    if isinstance(v, QTensor):
        return v.dequantize()
    if isinstance(v, list):
        return [_deq(x) for x in v]
    return v


def test_digits_nodes_match_their_twins(digits_program, digits) -> None:  # type: ignore[no-untyped-def]
    ir = exported_program_to_ir(digits_program)
    x = digits.batch()
    names = [layer.name for layer in inventory(ir).layers]
    qm = apply(ir, QuantPlan({k: LayerFormat("int8") for k in names}), [(x,)])
    assert _check_twins(lower_to_integer(qm), [x]) >= 10


@pytest.mark.parametrize("weight", ["int8", "int4"])
def test_mixed_ops_match_their_twins(weight: str) -> None:
    torch.manual_seed(0)
    model = _Mixed().eval()
    ids = torch.randint(0, 50, (4, 8), generator=torch.Generator().manual_seed(1))
    ir = exported_program_to_ir(torch.export.export(model, (ids,)))
    names = [layer.name for layer in inventory(ir).layers]
    qm = apply(ir, QuantPlan({k: LayerFormat(weight) for k in names}), [(ids,)])
    im = lower_to_integer(qm)
    kinds = {s.kind for s in im.steps.values()}
    assert {"embed", "add", "matmul", "scale", "mean", "cat", "keep", "layer"} <= kinds
    assert im.report.integer_only == "full", im.report.islands
    assert _check_twins(im, [ids]) >= 15
    with torch.no_grad():
        sim, got = qm.module()(ids), im(ids)
    assert float((sim - got).abs().max()) < 0.05 * float(sim.abs().max())
