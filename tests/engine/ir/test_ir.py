"""The data-only IR: validation, JSON and file round trips, and execution via fx."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from engine.errors import CorruptFileError, InvalidIRError, UnsupportedOpsError
from engine.io.importers import exported_program_to_ir
from engine.ir import (
    ALLOWED_OPS,
    DType,
    IRModel,
    Node,
    Ref,
    TensorSpec,
    infer_shapes,
    load_ir,
    resolve,
    save_ir,
    to_graph_module,
)


def _tiny(**over: object) -> IRModel:
    fields: dict[str, object] = {
        "inputs": (TensorSpec("x", (2, 3), "float32"),),
        "nodes": (
            Node("lin", "aten.linear.default", (Ref("x"), Ref("w"), Ref("b"))),
            Node("act", "aten.clamp.default", (Ref("lin"),), {"min": -math.inf, "max": 1.5}),
            Node("cast", "aten.to.dtype", (Ref("act"), DType("float64"))),
        ),
        "outputs": (Ref("cast"),),
        "tensors": {"w": torch.ones(4, 3), "b": torch.arange(4.0)},
    }
    fields.update(over)
    return IRModel(**fields)  # type: ignore[arg-type]


def test_tiny_graph_runs_with_hand_computed_values() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 0.0]])
    y = to_graph_module(_tiny())(x)
    # x @ ones(3,4).T + [0,1,2,3] = row sums + b, then clamp(max=1.5), then float64
    expected = torch.tensor([[1.5, 1.5, 1.5, 1.5], [-1.0, 0.0, 1.0, 1.5]], dtype=torch.float64)
    assert y.dtype == torch.float64 and torch.equal(y, expected)


def test_file_round_trip_preserves_graph_and_tensors(tmp_path: Path) -> None:
    m = _tiny()
    size = save_ir(m, tmp_path / "m.mpqir")
    assert size == (tmp_path / "m.mpqir").stat().st_size
    back = load_ir(tmp_path / "m.mpqir")
    assert back.graph_json() == m.graph_json()
    assert back.nodes == m.nodes  # -inf survives as a float
    assert all(torch.equal(back.tensors[k], m.tensors[k]) for k in m.tensors)


@pytest.mark.parametrize(
    ("over", "error", "match"),
    [
        ({"nodes": (Node("n", "aten.foo.default", (Ref("x"),)),)}, UnsupportedOpsError, "foo"),
        (
            {"nodes": (Node("n", "builtins.eval", ()), Node("m", "os.system", ()))},
            UnsupportedOpsError,
            "builtins.eval, os.system",
        ),
        ({"nodes": (Node("n", "aten.relu.default", (Ref("later"),)),)}, InvalidIRError, "later"),
        ({"nodes": (Node("x", "aten.relu.default", (Ref("x"),)),)}, InvalidIRError, "twice"),
        ({"outputs": (Ref("nope"),)}, InvalidIRError, "nope"),
        ({"outputs": ()}, InvalidIRError, "no outputs"),
        ({"version": 99}, InvalidIRError, "version"),
    ],
)
def test_invalid_graphs_are_refused(over: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _tiny(**over)


@pytest.mark.parametrize(
    "arg",
    [{"callable": "os.system"}, {"ref": 3}, {"dtype": "object"}, {"float": "1e999x"}, {}],
)
def test_json_values_outside_the_grammar_are_refused(arg: object) -> None:
    g = _tiny().graph_json()
    g["nodes"][0]["args"].append(arg)
    with pytest.raises(InvalidIRError):
        IRModel.from_json(g, _tiny().tensors)


def test_load_refuses_safetensors_without_ir(tmp_path: Path) -> None:
    from engine.ir import write_safetensors

    write_safetensors(tmp_path / "plain", {"w": torch.ones(1)})
    with pytest.raises(CorruptFileError, match="without an MPQ IR"):
        load_ir(tmp_path / "plain")


def test_load_refuses_tampered_graph(tmp_path: Path) -> None:
    from engine.ir import write_safetensors

    g = _tiny().graph_json()
    g["nodes"][0]["op"] = "aten.linear.default; import os"
    meta = {"format": "mpq-ir", "mpq_ir": json.dumps(g)}
    write_safetensors(tmp_path / "t", dict(_tiny().tensors), metadata=meta)
    with pytest.raises(UnsupportedOpsError):
        load_ir(tmp_path / "t")


def test_every_allowed_op_resolves_to_an_aten_overload() -> None:
    for op in ALLOWED_OPS - {"getitem"}:
        assert isinstance(resolve(op), torch._ops.OpOverload), op
    with pytest.raises(KeyError):
        resolve("aten.system.default")


def test_digits_ir_matches_exported_program(digits, digits_program, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ir = exported_program_to_ir(digits_program)
    save_ir(ir, tmp_path / "d.mpqir")
    gm = to_graph_module(load_ir(tmp_path / "d.mpqir"))
    x = digits.batch()
    with torch.no_grad():
        assert torch.equal(gm(x), digits_program.module()(x))
    assert "features.1.num_batches_tracked" not in ir.tensors  # unused buffers are dropped
    assert infer_shapes(ir)[ir.outputs[0].name] == (32, 10)


@pytest.mark.parametrize(
    "name",
    ['__class__") and print("INJECTED") or getattr(self, "training', "a b", "", "a..b", "x" * 513],
)
def test_names_outside_the_grammar_are_refused(name: str) -> None:
    """Names reach fx's generated code; only dotted identifiers are accepted."""
    with pytest.raises(InvalidIRError, match="letters, digits"):
        _tiny(tensors={"w": torch.ones(4, 3), "b": torch.arange(4.0), name: torch.ones(1)})


def test_tensor_names_cannot_shadow_module_attributes() -> None:
    m = _tiny(
        nodes=(Node("lin", "aten.linear.default", (Ref("x"), Ref("forward"), Ref("training"))),),
        outputs=(Ref("lin"),),
        tensors={"forward": torch.ones(4, 3), "training": torch.arange(4.0)},
    )
    gm = to_graph_module(m)
    assert gm.training is False
    assert torch.equal(gm(torch.ones(2, 3)), torch.tensor([[3.0, 4.0, 5.0, 6.0]] * 2))
