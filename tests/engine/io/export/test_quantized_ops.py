"""Quantized models using the newer ops: QDQ export matches MPQ's simulation, and they lower.

An audio-style CNN with TF "same" padding (``F.pad`` before each strided conv, as
``aten.pad`` or, as the ONNX importer writes it, ``aten.constant_pad_nd``) and a
small model mixing multi-output ops, comparisons, factories, norms and resizing
are quantized int8 (``engine.apply``), exported with :func:`export_onnx` and run
in onnxruntime against the simulated model; the integer-only lowering runs them
too, the ops without integer kernels as float islands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.io.export import export_onnx
from engine.io.importers import exported_program_to_ir
from engine.ir import IRModel
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import QuantizedModel, apply, inventory
from engine.transforms.integer import lower_to_integer

torch.set_num_threads(1)


def _same(length: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding: (left, right) so that the output length is ``ceil(length / stride)``."""
    total = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
    return total // 2, total - total // 2


class AudioCNN(nn.Module):
    """Waveform [N, 1, 64] -> 5 logits: two strided conv1d and a conv2d, each padded first."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.c1 = nn.Conv1d(1, 8, 5, stride=2)
        self.c2 = nn.Conv1d(8, 16, 3, stride=2)
        self.c3 = nn.Conv2d(1, 4, (3, 4))
        self.fc = nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c1(F.pad(x, _same(x.shape[-1], 5, 2), mode=self.mode)))
        h = F.relu(self.c2(F.pad(h, _same(h.shape[-1], 3, 2), mode=self.mode)))
        spec = h[:, :1].reshape(h.shape[0], 1, 4, -1)
        g = F.relu(self.c3(F.pad(spec, (1, 2, 1, 1), mode=self.mode)))
        return self.fc(torch.cat([h.mean(-1), g.mean((-1, -2))], 1))  # type: ignore[no-any-return]


class Mixed(nn.Module):
    """Image [N, 3, 8, 8] -> (logits, argmax): the newer ops between quantized layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.gn = nn.GroupNorm(2, 8)
        self.prelu = nn.PReLU(8)
        self.proj = nn.Linear(8, 12)
        self.head = nn.Linear(16, 5)
        self.register_buffer("pick", torch.tensor([0, 5, 35, 7]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.prelu(self.gn(self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))))
        h = F.interpolate(h, scale_factor=0.5, mode="bilinear")
        h = F.interpolate(h, size=(6, 6), mode="nearest")
        q, k, v = self.proj(h.flatten(2).transpose(1, 2)).chunk(3, dim=-1)
        a, b = q.split([1, 3], -1)
        pos = torch.arange(36, dtype=torch.float32) / 36
        s = torch.where((k > 0) & (v < 0.5), k, torch.zeros_like(k)) + pos[None, :, None]
        m, idx = s.max(dim=1)
        top = torch.gather(v, 1, idx.unsqueeze(1)).squeeze(1)
        norms = torch.linalg.vector_norm(v, dim=-1).cumsum(-1)[:, self.pick]
        parts = [torch.stack([m, top], 1).flatten(1), norms, F.leaky_relu(b.mean(1))]
        feats = torch.cat([*parts, torch.clamp(a.amax(1), -1, 1)], 1)
        return self.head(feats), s.argmax(-1)


def _quantize(
    make: Callable[[], nn.Module], shape: tuple[int, ...], *, pad_op: str | None = None
) -> tuple[QuantizedModel, list[torch.Tensor]]:
    """Build (seeded), export, import and quantize a model int8 (w8a8); 4 calibration batches
    and a fifth, unseen one."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = make().eval()
    batches = [torch.randn(shape, generator=gen) for _ in range(5)]
    ir = exported_program_to_ir(torch.export.export(model, (batches[0],)))
    if pad_op is not None:  # what the ONNX importer writes for a Pad: constant_pad_nd
        nodes = tuple(replace(n, op=pad_op) if n.op == "aten.pad.default" else n for n in ir.nodes)
        ir = IRModel(ir.inputs, nodes, ir.outputs, ir.tensors, ir.output_specs)
    names = [layer.name for layer in inventory(ir).layers]
    plan = QuantPlan.uniform(names, LayerFormat("int8", "a8"))
    return apply(ir, plan, [(x,) for x in batches[:4]]), batches


def _check(qm: QuantizedModel, batches: list[torch.Tensor], island_ops: set[str]) -> None:
    data = export_onnx(qm).data
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    simulated, integer = qm.module(), lower_to_integer(qm)
    assert island_ops <= set(integer.report.islands)
    for x in (batches[0], batches[4]):  # a calibration batch and an unseen one
        got = session.run(None, {qm.ir.inputs[0].name: x.numpy()})
        with torch.no_grad():
            sim = simulated(x)
        want = list(sim) if isinstance(sim, tuple) else [sim]
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(torch.from_numpy(g), w, rtol=1e-5, atol=1e-5)
    # integer-only clamps outputs to their calibrated ranges: compare on calibration data
    with torch.no_grad():
        ints, sim = integer(batches[0]), simulated(batches[0])
    pairs = zip(*(list(v) if isinstance(v, tuple) else [v] for v in (ints, sim)), strict=True)
    for a, b in pairs:
        assert float((a.float() - b.float()).abs().max()) <= 0.01 * float(b.abs().max())


@pytest.mark.parametrize(
    ("mode", "pad_op"),
    [
        ("constant", None),
        ("constant", "aten.constant_pad_nd.default"),
        ("reflect", None),
        ("replicate", None),
        ("circular", None),
    ],
)
def test_padded_audio_cnn_exports_quantized_and_lowers(mode: str, pad_op: str | None) -> None:
    qm, batches = _quantize(lambda: AudioCNN(mode), (4, 1, 64), pad_op=pad_op)
    op = pad_op or "aten.pad.default"
    assert sum(n.op == op for n in qm.ir.nodes) == 3
    assert len(qm.layers) == 4
    _check(qm, batches, set())
    # every padding mode runs on the integer codes (constant padding inserts the zero
    # point): no float island left
    assert op.removeprefix("aten.").split(".")[0] not in lower_to_integer(qm).report.islands


def test_mixed_new_ops_export_quantized_and_lower() -> None:
    qm, batches = _quantize(Mixed, (4, 3, 8, 8))
    ops = {n.op for n in qm.ir.nodes}
    assert {"aten.max.dim", "aten.chunk.default", "aten.index.Tensor", "getitem"} <= ops
    _check(qm, batches, {"group_norm", "upsample_bilinear2d", "chunk", "getitem", "gather"})
