"""Every integer node of a lowered model against its simulated twin: the float op on the
integer model's own (dequantized) inputs, quantized to the node's qparams. Within one step.

Covers the kernels as the lowering wires them: conv (incl. depthwise) + ReLU clamps, max and
adaptive-average pools, flatten, linear, embedding lookups, residual add and sub, activation
matmul, scaling by a constant, mean, concatenation, hardtanh, 1-D max pool, zero padding
of codes with a nonzero zero point, a dead channel (weight scale 1e-11 of the others').
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from engine.io.importers import exported_program_to_ir
from engine.ir import bind, resolve
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, inventory
from engine.transforms.integer import QTensor, lower_to_integer
from engine.transforms.integer._lower import PAD_OPS


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


class _SamePadBlock(nn.Module):
    """EfficientNet-Lite's block: a 1x1 conv (its output, not clamped, has a nonzero zero
    point), TF "same" padding as ``ZeroPad2d`` before a stride-2 depthwise conv, batch
    norm, ReLU6, a 1x1 conv. Channel 1 is dead after folding (its BN scale is 1e-9, so its
    weight scale is ~1e-9 of the others') with a bias of 1.5."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(3, 4, 1)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.dw = nn.Conv2d(4, 4, 3, stride=2, groups=4, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU6()
        self.pw = nn.Conv2d(4, 6, 1)
        with torch.no_grad():
            self.bn.weight.copy_(torch.tensor([1.0, 1e-9, 0.8, 1.2]))
            self.bn.bias.copy_(torch.tensor([0.1, 1.5, -0.2, 0.3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.act(self.bn(self.dw(self.pad(self.expand(x))))))


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


def test_same_padded_depthwise_with_a_dead_channel_matches_its_twin() -> None:
    torch.manual_seed(0)
    model = _SamePadBlock().eval()
    x = torch.randn(4, 3, 9, 9, generator=torch.Generator().manual_seed(1))
    ir = exported_program_to_ir(torch.export.export(model, (x,)))
    names = [layer.name for layer in inventory(ir).layers]
    qm = apply(ir, QuantPlan({k: LayerFormat("int8") for k in names}), [(x,)])
    im = lower_to_integer(qm)
    rep = im.report
    # padding runs on codes; the dead channel's bias fits int32 at a coarser weight scale
    assert rep.integer_only == "full" and rep.islands == {}, rep.islands
    dw = next(r for r in rep.layers if r.name == "dw")
    assert dw.acc_bits <= 32 and "1 channels at a coarser scale" in dw.weight
    env = im.trace(x)
    pad = next(n.name for n in qm.ir.nodes if n.op in PAD_OPS)
    padded: QTensor = env[pad]
    assert padded.spec.zero_point > 0  # an input below 0: real 0 is not code 0
    assert bool((padded.q[:, :, -1, :] == padded.spec.zero_point).all())
    assert im.steps[pad].kind == "keep" and _check_twins(im, [x]) >= 5
    # the dead channel is the constant ReLU6(1.5); one shared shift had rounded its
    # multiplier to 0 and the channel to 0
    relu = next(n.name for n in qm.ir.nodes if n.op == "aten.hardtanh.default")
    dead = env[relu].dequantize()[:, 1]
    assert float((dead - 1.5).abs().max()) <= env[relu].spec.scale


def test_efficientnet_nodes_match_their_twins(efficientnet_int8) -> None:  # type: ignore[no-untyped-def]
    qm, images = efficientnet_int8
    two = replace(qm, ir=qm.ir.at_batch(2))
    # 65 layers, 48 ReLU6 clamps, 22 paddings, 9 residual adds, the mean: every one
    assert _check_twins(lower_to_integer(two), [images[:2]]) >= 140
