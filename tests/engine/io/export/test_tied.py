"""A weight read in both orientations -- a language model's tied embedding and LM head."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import nn

from engine.io.export import export_onnx
from engine.io.importers import exported_program_to_ir
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import apply, inventory
from tests.engine.io.export._ort import session


class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(40, 16)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Linear(16, 40, bias=False)
        self.head.weight = self.emb.weight  # tied, as GPT-2 and Llama do

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.emb(ids))))  # type: ignore[no-any-return]


def test_a_tied_weight_is_stored_once_and_the_export_matches_the_simulation() -> None:
    torch.manual_seed(0)
    ids = torch.randint(0, 40, (3, 7))
    ir = exported_program_to_ir(torch.export.export(TiedLM().eval(), (ids,)))
    layers = [x.name for x in inventory(ir).layers]
    qm = apply(ir, QuantPlan.uniform(layers, LayerFormat(weight="int8")), [[ids]])
    exported = export_onnx(qm)
    model = onnx.load_from_string(exported.data)
    names = [i.name for i in model.graph.initializer]
    assert len(names) == len(set(names))
    sess = session(exported.data)
    got = sess.run(None, {model.graph.input[0].name: ids.numpy()})[0]
    with torch.no_grad():
        want = qm.module()(ids).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
