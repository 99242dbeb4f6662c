"""An attention mask of finfo.min added to integer attention scores stays a float island.

ONNX exports of transformers write attention as matmul + add(mask bias) + softmax, the
bias ``(1 - mask) * finfo(float32).min``. Quantizing that add at 16 bits over a range of
-3.4e38 left the scores no resolution (MiniLM from ONNX: integer-only cosine 0.447
against 0.993 simulated); the add now stays in float and the scores keep theirs.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.data import cosine
from engine.io.importers import exported_program_to_ir
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, inventory
from engine.transforms.integer import lower_to_integer


class MaskedAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 16)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.q(x) @ self.k(x).transpose(1, 2) * 0.25
        bias = (1.0 - mask[:, None, :].float()) * torch.finfo(torch.float32).min
        return torch.softmax(scores + bias, -1) @ self.v(x)


def test_a_finfo_min_mask_add_stays_float_and_the_scores_keep_their_resolution() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 6, 16)
    mask = torch.ones(8, 6, dtype=torch.long)
    mask[:, 4:] = 0
    model = MaskedAttention().eval()
    ir = exported_program_to_ir(torch.export.export(model, (x, mask)))
    plan = QuantPlan.uniform([x.name for x in inventory(ir).layers], LayerFormat())  # w8a8
    qm = apply(ir, plan, [[x, mask]])
    im = lower_to_integer(qm)
    assert "add" in im.report.islands  # op -> count of float-island nodes
    with torch.no_grad():
        simulated = qm.module()(x, mask)
        integer = im(x, mask)
    assert cosine(integer, simulated) > 0.999
