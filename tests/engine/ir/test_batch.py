"""Any batch: the symbolic trace that finds batch literals, IRModel.at_batch, evaluation batches.

Each model is exported the way people export it (a fixed batch of 1 or 3, or a dynamic
batch) and must then give, at batch n, exactly what the eager model gives on the same n
samples -- or keep its fixed batch when a literal really cannot follow the batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim

from engine.data import evaluation_batch, fit_batch, load_dataset
from engine.errors import InvalidIRError
from engine.io.importers import exported_program_to_ir
from engine.ir import BatchSite, IRModel, generalize_batch, to_graph_module
from tests.conftest import Digits


class Attention(nn.Module):
    """Multi-head self-attention written with batch-sized views, a mask expand and a slice."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48)
        self.out = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        qkv = self.qkv(x).view(b, s, 3, 4, 4).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = (1.0 - mask[:, None, None, :].float()).expand(b, 4, s, s) * -1e4
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        h = a.transpose(1, 2).reshape(b, s, 16)[:b]
        flat = h.reshape(b * s, 16)
        return self.out(flat).view(b, s * 4) + torch.zeros(b, 1)


def _inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, 16, generator=g)
    mask = torch.ones(n, 5, dtype=torch.long)
    mask[:, 3:] = torch.randint(0, 2, (n, 2), generator=g)
    return x, mask


def _export(model: nn.Module, batch: int, dynamic: bool) -> IRModel:
    args = _inputs(batch)
    shapes = tuple({0: Dim("batch", min=1, max=64)} for _ in args) if dynamic else None
    ep = torch.export.export(model.eval(), args, dynamic_shapes=shapes)
    return exported_program_to_ir(ep)


@pytest.mark.parametrize(
    ("batch", "dynamic"), [(1, False), (3, False), (3, True)], ids=["b1", "b3", "dynamic"]
)
def test_attention_runs_at_any_batch_like_eager(batch: int, dynamic: bool) -> None:
    torch.manual_seed(0)
    model = Attention().eval()
    ir = generalize_batch(_export(model, batch, dynamic))
    assert ir.batch is not None and set(ir.batch.inputs) == {"x", "mask"}
    assert ir.batch.outputs == (1,)
    for n in (1, 2, 7, 40):
        x, mask = _inputs(n, seed=n)
        with torch.no_grad():
            got = to_graph_module(ir.at_batch(n))(x, mask)
            want = model(x, mask)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_at_the_stored_batch_the_graph_is_unchanged() -> None:
    torch.manual_seed(0)
    model = Attention().eval()
    raw = _export(model, 3, False)
    ir = generalize_batch(raw)
    assert ir.at_batch(3) is ir
    x, mask = _inputs(3)
    with torch.no_grad():
        assert torch.equal(to_graph_module(ir)(x, mask), to_graph_module(raw)(x, mask))
    # the reshape to [b, s*4] and the [b, 1] factory carry the batch; 5, 16 and 4 do not
    assert {(s.node, s.coeff) for s in ir.batch.sites} >= {("zeros", 1)}  # type: ignore[union-attr]


def test_digits_static_and_dynamic_exports_evaluate_at_any_batch(
    digits: Digits, digits_program: torch.export.ExportedProgram
) -> None:
    ir = generalize_batch(exported_program_to_ir(digits_program))
    assert ir.batch is not None and ir.batch.size == 32
    x = digits.batch(40)
    reference = digits_program.module()(x[:32])
    for n in (1, 5, 40):
        out = to_graph_module(ir.at_batch(n))(x[:n])
        torch.testing.assert_close(out[: min(n, 32)], reference[: min(n, 32)])


class BatchConstant(nn.Module):
    """Adds a stored [3, 4] tensor: valid only at batch 3."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.randn(3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset


class FirstSample(nn.Module):
    """Mixes samples: every output row depends on sample 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x[0]


class HalfBatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:2] * 2


@pytest.mark.parametrize("model", [BatchConstant(), FirstSample(), HalfBatch()])
def test_graphs_tied_to_their_batch_keep_it(model: nn.Module) -> None:
    ep = torch.export.export(model.eval(), (torch.randn(3, 4),))
    ir = generalize_batch(exported_program_to_ir(ep))
    assert ir.batch is None and ir.batch_size == 3
    assert ir.at_batch(3) is ir
    with pytest.raises(ValueError, match="fixed batch of 3"):
        ir.at_batch(4)
    assert evaluation_batch(ir) == 3


def test_batch_round_trips_through_json_and_a_broken_site_is_refused() -> None:
    ir = generalize_batch(_export(Attention(), 3, False))
    again = IRModel.from_json(json.loads(json.dumps(ir.graph_json())), ir.tensors)
    assert again.batch == ir.batch
    assert again.at_batch(5).graph_json() == ir.at_batch(5).graph_json()
    site = ir.batch.sites[0]  # type: ignore[union-attr]
    bad = BatchSite(site.node, site.path, site.coeff + 1)
    broken = IRModel.from_json(
        {**ir.graph_json(), "batch": {**ir.graph_json()["batch"], "sites": [bad.__dict__]}},
        ir.tensors,
    )
    with pytest.raises(InvalidIRError, match="batch site"):
        broken.at_batch(5)


def test_evaluation_batch_is_bounded_by_memory_and_samples() -> None:
    ir = generalize_batch(_export(Attention(), 3, False))
    assert evaluation_batch(ir) == 64
    assert evaluation_batch(ir, samples=10) == 10
    big = generalize_batch(_export_conv(torch.randn(2, 3, 512, 512)))
    # two 8-channel float32 maps of 512x512 alive at once: 16 MiB a sample
    assert evaluation_batch(big) == 256 // 16


def _export_conv(x: torch.Tensor) -> IRModel:
    model = nn.Sequential(*[nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(8)])
    return exported_program_to_ir(torch.export.export(model.eval(), (x,)))


class SumOverRows(nn.Module):
    """Exported at batch 1, ``view(x, [2, 3]).mean(0)`` is per sample; at batch n it is not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x.view(2, 3).mean(0, keepdim=True).repeat(1, 2)


def test_fit_batch_checks_the_move_on_the_data_and_keeps_the_batch_when_rows_differ(
    tmp_path: Path,
) -> None:
    ep = torch.export.export(SumOverRows(), (torch.randn(1, 6),))
    ir = generalize_batch(exported_program_to_ir(ep))
    assert ir.batch is not None  # shapes alone cannot tell
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(0).standard_normal((20, 6), np.float32))
    data = load_dataset(tmp_path / "d.npz", ir.inputs)
    fitted, batched = fit_batch(ir, data)
    assert fitted.batch is None and batched.batch_size == 1
    assert "did not compute the same outputs" in batched.notes[-1]
    good = generalize_batch(_export(Attention(), 3, False))
    np.savez(
        tmp_path / "a.npz",
        **{k: v.numpy() for k, v in zip(("x", "mask"), _inputs(20), strict=True)},
    )
    fitted, batched = fit_batch(good, load_dataset(tmp_path / "a.npz", good.inputs))
    # 5 of the 20 samples calibrate, 15 evaluate: one batch of 15
    assert fitted.batch is not None and batched.batch_size == fitted.batch_size == 15


class FoldedAtItsBatch(nn.Module):
    """What exports fold: a per-sample constant stored at the batch, masks indexed by arange(B)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.arange(4.0).expand(3, 1, 4).clone())  # equal rows

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(3)  # the batch's indices, written at the exported batch
        keep = mask[rows][:, :, None].float()
        return (x + self.offset) * keep


def test_row_constants_and_batch_aranges_are_moved_with_the_batch() -> None:
    model = FoldedAtItsBatch().eval()
    x, mask = _inputs(3)
    ep = torch.export.export(model, (x[..., :4].contiguous(), mask))
    ir = generalize_batch(exported_program_to_ir(ep))
    assert ir.batch is not None
    assert ir.tensors["offset"].shape == (1, 1, 4)  # one row stored, expanded in the graph
    for n in (1, 7):
        x, mask = _inputs(n, seed=n)
        x = x[..., :4].contiguous()
        want = (x + torch.arange(4.0)) * mask[:, :, None].float()
        torch.testing.assert_close(to_graph_module(ir.at_batch(n))(x, mask), want)
