"""Models that run at any batch export ONNX that does too.

Each model is exported with ``torch.export`` at a fixed batch and generalised
(:func:`engine.ir.generalize_batch`); its ONNX export -- float, and quantized
w8a8 -- must declare ``dim_param: "batch"`` and give in onnxruntime, at batches 1,
3, 17 and the stored one, what MPQ's own model gives at that batch
(``to_graph_module(ir.at_batch(n))``). Where the exporter cannot follow the batch
the file keeps its fixed batch and the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.io import save_artifact
from engine.io.export import OnnxExport, export_artifact_onnx, export_float_onnx, export_onnx
from engine.io.importers import exported_program_to_ir
from engine.ir import (
    BatchDim,
    BatchSite,
    Device,
    DType,
    IRModel,
    Node,
    Ref,
    TensorSpec,
    generalize_batch,
    to_graph_module,
)
from engine.quant import LayerFormat, QuantPlan
from engine.transforms import QuantizedModel, apply, inventory
from tests.conftest import Digits
from tests.engine.io.export._ort import session as _session
from tests.engine.io.export.test_quantized_ops import Mixed
from tests.engine.ir.test_batch import Attention

torch.set_num_threads(1)

BATCHES = (1, 3, 17)

Inputs = Callable[[int], list[torch.Tensor]]
"""The model inputs at batch n (seeded)."""


class GroupedAttention(nn.Module):
    """Causal grouped-query attention (4 query heads, 2 key/value heads) over [N, 6, 16]."""

    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(16, 16)
        self.kv = nn.Linear(16, 16)
        self.out = nn.Linear(16, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q = self.q(x).view(b, s, 4, 4).transpose(1, 2)
        kv = self.kv(x).view(b, s, 2, 2, 4).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, kv[0], kv[1], is_causal=True, enable_gqa=True)
        return self.out(a.transpose(1, 2).reshape(b, s, 16))  # type: ignore[no-any-return]


class ShapeOps(nn.Module):
    """[N, 4, 6] -> ([N, 240], [4N, 6]): ops whose ONNX writes shapes holding the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        h = self.fc(x)
        img = self.conv(h.unsqueeze(1).repeat(1, 2, 1, 1))
        rolled = F.interpolate(img, size=(8, 12), mode="bilinear").roll(1, dims=3)
        tiled = h.repeat(2, 1, 1, 1).mean(0)  # reps longer than the rank: a Reshape first
        filled = torch.zeros_like(h) + x.new_ones(n, 4, 1) + torch.full((n, 1, 1), 0.5)
        spread = h[:, None].expand(n, 3, 4, 6).sum(1)
        feats = [rolled.flatten(1), tiled.flatten(1), (filled + spread).flatten(1)]
        return torch.cat(feats, 1), h.reshape(n * 4, 6)


class FlatRoll(nn.Module):
    """``roll`` of the flattened tensor: its shift wraps at ``N * 8`` (not a multiple of N)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.roll(3) * 2


def _generic(model: nn.Module, *args: torch.Tensor) -> IRModel:
    ir = generalize_batch(exported_program_to_ir(torch.export.export(model.eval(), args)))
    assert ir.batch is not None
    return ir


Shapes = list[list[int | str]]


def _dims(data: bytes) -> tuple[Shapes, Shapes]:
    """Input and output shapes as declared (``dim_param`` strings, ``dim_value`` ints)."""
    graph = onnx.load_from_string(data).graph

    def shapes(values: Sequence[onnx.ValueInfoProto]) -> Shapes:
        return [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values]

    return shapes(graph.input), shapes(graph.output)


def _run_at_batches(
    exported: OnnxExport,
    ir: IRModel,
    make: Inputs,
    batches: Sequence[int],
) -> None:
    """Run the file at each batch and compare with MPQ's model at that batch.

    A float file also runs with onnxruntime's default (full) graph optimizations.
    """
    onnx.checker.check_model(onnx.load_from_string(exported.data), full_check=True)
    sessions = [_session(exported.data)]
    if not exported.report.activations:
        sessions.append(_session(exported.data, optimize=True))
    for n in batches:
        inputs = make(n)
        with torch.no_grad():
            want = to_graph_module(ir.at_batch(n))(*inputs)
        wants = list(want) if isinstance(want, tuple) else [want]
        feeds = {s.name: t.numpy() for s, t in zip(ir.inputs, inputs, strict=True)}
        for session in sessions:
            for got, w in zip(session.run(None, feeds), wants, strict=True):
                assert got.shape == tuple(w.shape), (n, got.shape, w.shape)
                torch.testing.assert_close(torch.from_numpy(got), w, rtol=1e-5, atol=1e-5)


def _randn(*shape: int) -> Inputs:
    def make(n: int) -> list[torch.Tensor]:
        return [torch.randn(n, *shape, generator=torch.Generator().manual_seed(n))]

    return make


def _attention_inputs(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    mask = torch.ones(n, 5, dtype=torch.long)
    mask[:, 3:] = torch.randint(0, 2, (n, 2), generator=g)
    return [torch.randn(n, 5, 16, generator=g), mask]


def _w8a8(ir: IRModel, calibration: list[list[torch.Tensor]]) -> QuantizedModel:
    names = [layer.name for layer in inventory(ir).layers]
    return apply(ir, QuantPlan.uniform(names, LayerFormat("int8", "a8")), calibration)


def test_digits_exports_with_a_dynamic_batch(
    digits: Digits, digits_program: torch.export.ExportedProgram
) -> None:
    ir = generalize_batch(exported_program_to_ir(digits_program))
    assert ir.batch is not None and ir.batch.size == 32
    x = digits.batch(64)

    def make(n: int) -> list[torch.Tensor]:
        return [x[:n]]

    exported = export_float_onnx(ir)
    assert exported.report.dynamic_batch and exported.report.notes == ()
    assert _dims(exported.data) == ([["batch", 1, 8, 8]], [["batch", 10]])
    _run_at_batches(exported, ir, make, (*BATCHES, 32, 64))
    qm = _w8a8(ir, [[x[:32]], [x[32:]]])
    exported = export_onnx(qm)
    assert exported.report.dynamic_batch and exported.report.activations == {"uint8": 4}
    _run_at_batches(exported, qm.ir, make, (*BATCHES, 32))


def test_at_the_stored_batch_the_dynamic_file_computes_what_the_static_one_does(
    digits: Digits, digits_program: torch.export.ExportedProgram
) -> None:
    ir = generalize_batch(exported_program_to_ir(digits_program))
    x = digits.batch(32)
    qm = _w8a8(ir, [[x]])
    dynamic, static = export_onnx(qm), export_onnx(replace(qm, ir=replace(qm.ir, batch=None)))
    assert not static.report.dynamic_batch and _dims(static.data)[0] == [[32, 1, 8, 8]]
    assert "Shape" not in {n.op_type for n in onnx.load_from_string(static.data).graph.node}
    (a,), (b,) = (
        _session(dynamic.data).run(None, {"x": x.numpy()}),
        _session(static.data).run(None, {"x": x.numpy()}),
    )
    assert np.array_equal(a, b)
    assert dynamic.report.layers == static.report.layers


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "w8a8"])
def test_attention_with_batch_sized_views_expand_and_zeros(quantized: bool) -> None:
    torch.manual_seed(0)
    ir = _generic(Attention(), *_attention_inputs(3))
    assert {s.node for s in ir.batch.sites} >= {"view", "zeros"}  # type: ignore[union-attr]
    if quantized:
        qm = _w8a8(ir, [_attention_inputs(3)])
        exported, ir = export_onnx(qm), qm.ir
        assert exported.report.activations
    else:
        exported = export_float_onnx(ir)
    assert exported.report.dynamic_batch
    assert _dims(exported.data) == ([["batch", 5, 16], ["batch", 5]], [["batch", 20]])
    _run_at_batches(exported, ir, _attention_inputs, (*BATCHES, 3))


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "w8a8"])
def test_grouped_query_attention_follows_the_batch(quantized: bool) -> None:
    torch.manual_seed(0)
    make = _randn(6, 16)
    ir = _generic(GroupedAttention(), *make(3))
    if quantized:
        qm = _w8a8(ir, [make(3)])
        exported, ir = export_onnx(qm), qm.ir
    else:
        exported = export_float_onnx(ir)
    assert exported.report.dynamic_batch
    _run_at_batches(exported, ir, make, (*BATCHES, 3))


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "w8a8"])
def test_shape_writing_converters_follow_the_batch(quantized: bool) -> None:
    """Reshape, Tile's Reshape, Resize sizes, roll's Reshape, factories and Expand."""
    torch.manual_seed(0)
    make = _randn(4, 6)
    ir = _generic(ShapeOps(), *make(3))
    assert ir.batch.outputs == (1, 4)  # type: ignore[union-attr]
    if quantized:
        qm = _w8a8(ir, [make(3)])
        exported, ir = export_onnx(qm), qm.ir
    else:
        exported = export_float_onnx(ir)
    assert exported.report.dynamic_batch
    assert _dims(exported.data) == ([["batch", 4, 6]], [["batch", 240], ["4*batch", 6]])
    _run_at_batches(exported, ir, make, (*BATCHES, 3))


def test_mixed_ops_model_follows_the_batch() -> None:
    torch.manual_seed(0)
    make = _randn(3, 8, 8)
    ir = _generic(Mixed(), *make(4))
    qm = _w8a8(ir, [make(4)])
    exported = export_onnx(qm)
    assert exported.report.dynamic_batch
    _run_at_batches(exported, qm.ir, make, (*BATCHES, 4))


def _sample_indices(batch: BatchDim | None) -> IRModel:
    """``(x + arange(4)[:, None]) * arange(1, 13, 4.)``: ``arange(B)`` a batch site."""
    cpu = Device()  # as torch.export writes factories (the meta pass moves them)
    nodes = (
        Node("idx", "aten.arange.default", (4,), {"device": cpu}),
        Node("col", "aten.unsqueeze.default", (Ref("idx"), 1)),
        Node("col_f", "aten.to.dtype", (Ref("col"), DType("float32"))),
        Node("y", "aten.add.Tensor", (Ref("x"), Ref("col_f"))),
        Node(
            "pos", "aten.arange.start_step", (1, 13, 4), {"dtype": DType("float32"), "device": cpu}
        ),
        Node("z", "aten.mul.Tensor", (Ref("y"), Ref("pos"))),
    )
    x = TensorSpec("x", (4, 3), "float32")
    return IRModel((x,), nodes, (Ref("z"),), {}, (TensorSpec("z", (4, 3), "float32"),), batch=batch)


def test_arange_of_the_batch_is_a_range_the_batch_moves() -> None:
    ir = _sample_indices(BatchDim(4, ("x",), (BatchSite("idx", (0,), 1),), (1,)))
    exported = export_float_onnx(ir)
    assert exported.report.dynamic_batch
    ops = [n.op_type for n in onnx.load_from_string(exported.data).graph.node]
    assert ops.count("Range") == 2 and "Squeeze" in ops  # the limit: a 0-d batch
    _run_at_batches(exported, ir, _randn(3), (*BATCHES, 4))
    static = export_float_onnx(_sample_indices(None))  # a fixed batch: arange's values
    assert "Range" not in {n.op_type for n in onnx.load_from_string(static.data).graph.node}


def test_a_converter_that_cannot_follow_the_batch_keeps_it_and_says_so() -> None:
    make = _randn(8)
    ir = _generic(FlatRoll(), *make(4))
    exported = export_float_onnx(ir)
    assert not exported.report.dynamic_batch
    (note,) = exported.report.notes
    assert note.startswith("exported with a fixed batch of 4:") and "aten.roll.default" in note
    assert _dims(exported.data) == ([[4, 8]], [[4, 8]])
    _run_at_batches(exported, ir, make, (4,))


def test_artifact_of_a_dynamic_batch_model_exports_with_a_dynamic_batch(
    digits: Digits, digits_program: torch.export.ExportedProgram, tmp_path: Path
) -> None:
    ir = generalize_batch(exported_program_to_ir(digits_program))
    x = digits.batch(64)
    plan = {  # every weight emitter: outliers, int3 in int8, a codebook, blocked int4
        "features.0": LayerFormat("int8", "a8", outliers=3),
        "features.4": LayerFormat("int3", "a4"),
        "features.7": LayerFormat("cb16", "a16"),
        "classifier": LayerFormat("int4g32", "a8"),
    }
    qm = apply(ir, QuantPlan(plan), [[x[:32]], [x[32:]]])
    save_artifact(qm, tmp_path / "model.mpq")
    from_file = export_artifact_onnx(tmp_path / "model.mpq")
    assert from_file.data == export_onnx(qm).data and from_file.report.dynamic_batch

    # int3/a4 and a16 activations: onnxruntime's x / s and torch's x * (1/s) round a few
    # codes differently at any batch, so compare with the static file written for each batch
    # exactly, and with the simulation by top-1, as test_onnx does for this plan
    onnx.checker.check_model(onnx.load_from_string(from_file.data), full_check=True)
    session = _session(from_file.data)
    for n in (*BATCHES, 32):
        static = export_onnx(replace(qm, ir=replace(qm.ir.at_batch(n), batch=None)))
        got = session.run(None, {"x": x[:n].numpy()})[0]
        assert np.array_equal(got, _session(static.data).run(None, {"x": x[:n].numpy()})[0])
        with torch.no_grad():
            want = to_graph_module(qm.ir.at_batch(n))(x[:n])
        assert np.array_equal(got.argmax(1), want.argmax(1).numpy())
