"""The real pretrained MiniLM sentence encoder through the isolated .pt2 importer."""

from __future__ import annotations

import pytest
import torch

from engine.io.importers import exported_program_to_ir, import_model
from engine.ir import to_graph_module
from engine.transforms import inventory

pytestmark = pytest.mark.real_model


def test_minilm_imports_runs_and_has_36_linear_and_3_embeddings(minilm) -> None:  # type: ignore[no-untyped-def]
    imported = import_model(minilm.pt2)
    inv = inventory(imported.ir)
    kinds = [layer.kind for layer in inv.layers]
    assert kinds.count("linear") == 36 and kinds.count("embedding") == 3
    names = {layer.name for layer in inv.layers}
    assert "encoder.layer.5.output.dense" in names
    assert "embeddings.word_embeddings" in names
    assert "pooler.dense" not in names  # the sentence encoder does not use BERT's pooler
    assert [s.shape for s in imported.ir.inputs] == [(32, 64)] * 3

    reference = torch.export.load(minilm.pt2).module()  # our own file, loaded in-process
    batch = minilm.batch()
    with torch.no_grad():
        ours, ref = to_graph_module(imported.ir)(*batch), reference(*batch)
    assert ours.shape == (32, 384)
    assert (ours - ref).abs().max() <= 1e-5
    assert torch.allclose(ours.norm(dim=1), torch.ones(32), atol=1e-5)


def test_whole_bert_model_export_lists_all_37_linear_layers() -> None:
    """Exporting BertModel itself (not the sentence wrapper) keeps the unused pooler."""
    from transformers import BertModel

    from examples.minilm import model_dir

    bert = BertModel.from_pretrained(str(model_dir()), local_files_only=True).eval()
    ids = torch.ones(2, 16, dtype=torch.long)
    ir = exported_program_to_ir(torch.export.export(bert, (ids, torch.ones_like(ids))))
    linear = [layer.name for layer in inventory(ir).layers if layer.kind == "linear"]
    assert len(linear) == 37 and "pooler.dense" in linear
