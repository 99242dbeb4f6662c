"""The weight-format registry: lookups, errors, every scheme's contract, and a format added
from outside (the ternary example of docs/adding-a-format.md) going through the whole engine."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.errors import InvalidPlanError
from engine.io import load_artifact, predict_model_payload, save_artifact
from engine.io.export import _tensors as onnx_tensors
from engine.io.export import export_onnx
from engine.ir import IRModel, Node, Ref, TensorSpec
from engine.quant import (
    AffineQParams,
    CodebookQParams,
    LayerFormat,
    QuantPlan,
    WeightFormat,
    WeightScheme,
    _onnx,
    choose_qparams_affine,
    hessian_from_inputs,
    known_formats,
    register_weight_scheme,
    scheme_for,
    scheme_for_qparams,
    stored_parts,
    unregister_weight_scheme,
    weight_format,
    weight_scheme,
    weight_schemes,
)
from engine.transforms import apply
from engine.transforms.integer import lower_to_integer
from tests.engine.io.export._ort import session
from tests.engine.quant.ternary_format import TernaryQParams, TernaryScheme

ROOT = Path(__file__).resolve().parents[3]
BUILTIN_FORMATS = [
    "int2",
    "int3",
    "int4",
    "int5",
    "int8",
    "int16",
    "int4g32",
    "int8g64",
    "cb2",
    "cb16",
    "cb256",
    "fp16",
    "fp32",
]


@pytest.fixture
def ternary() -> Iterator[WeightScheme[Any]]:
    """The example scheme, registered for one test."""
    scheme = register_weight_scheme(TernaryScheme())
    yield scheme
    unregister_weight_scheme(scheme.name)


def _matrix(rows: int = 8, n: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, n, generator=torch.Generator().manual_seed(seed))


# --- lookups ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("int4", WeightFormat("int4", "affine", 4)),
        ("int16", WeightFormat("int16", "affine", 16)),
        ("int4g64", WeightFormat("int4g64", "affine", 4, group_size=64)),
        ("cb2", WeightFormat("cb2", "codebook", 1, codebook_size=2)),
        ("cb256", WeightFormat("cb256", "codebook", 8, codebook_size=256)),
        ("fp16", WeightFormat("fp16", "float", 16, is_float=True)),
        ("fp32", WeightFormat("fp32", "float", 32, is_float=True)),
    ],
)
def test_format_strings_parse_to_their_scheme(text: str, want: WeightFormat) -> None:
    assert weight_format(text) == want
    assert scheme_for(text) is weight_scheme(want.scheme) is scheme_for(want)
    assert LayerFormat(text).spec == want


def test_lookup_by_qparams_type() -> None:
    qp = choose_qparams_affine(_matrix(), bits=4, axis=0)
    assert scheme_for_qparams(qp) is weight_scheme("affine")
    book = CodebookQParams(torch.tensor([-1.0, 0.0, 1.0]))
    assert scheme_for_qparams(book) is weight_scheme("codebook")
    with pytest.raises(TypeError, match="no weight scheme produces str qparams; known: Affine"):
        scheme_for_qparams("scale")


def test_builtin_schemes_in_order() -> None:
    assert [s.name for s in weight_schemes()] == ["affine", "codebook", "float"]
    assert known_formats() == "int2..int8, int16, int4g64 (grouped), cb2..cb256, fp16, fp32"
    assert stored_parts() == {"", ".codes", ".scale", ".codebook"}


def test_unknown_format_lists_the_known_ones() -> None:
    msg = (
        "unknown weight format 'float8'; use int2..int8, int16, int4g64 (grouped), "
        "cb2..cb256, fp16, fp32"
    )
    with pytest.raises(InvalidPlanError, match=re.escape(msg)) as info:
        weight_format("float8")
    assert info.value.code == "invalid_plan"
    with pytest.raises(InvalidPlanError, match="a weight format is a string"):
        weight_format(4)  # type: ignore[arg-type]


def test_unknown_scheme_name_lists_the_registered_ones() -> None:
    with pytest.raises(InvalidPlanError, match="unknown weight scheme 'pow2'; registered: affine"):
        weight_scheme("pow2")


@pytest.mark.parametrize(
    ("text", "match"),
    [("int9", "2..8 or 16"), ("int4g48", "32, 64 or 128"), ("cb3", "2, 4, ..., 256")],
)
def test_a_scheme_refuses_bad_values_of_its_own_syntax(text: str, match: str) -> None:
    with pytest.raises(InvalidPlanError, match=match):
        weight_format(text)


def test_registration_refuses_duplicates_and_overlaps(ternary: WeightScheme[Any]) -> None:
    with pytest.raises(ValueError, match="named 'ternary' is already registered"):
        register_weight_scheme(TernaryScheme())

    class Clash(TernaryScheme):
        name = "clash"
        qparams_type = None

    register_weight_scheme(Clash())
    try:
        with pytest.raises(ValueError, match="read by several schemes: ternary, clash"):
            weight_format("ternary")
    finally:
        unregister_weight_scheme("clash")
    assert weight_format("ternary").scheme == "ternary"


def test_registering_extends_the_error_message_and_unregistering_restores_it() -> None:
    register_weight_scheme(TernaryScheme())
    try:
        assert known_formats().endswith("fp16, fp32, ternary")
        with pytest.raises(InvalidPlanError, match=r"fp16, fp32, ternary$"):
            LayerFormat("float8")
    finally:
        unregister_weight_scheme("ternary")
    with pytest.raises(InvalidPlanError, match="unknown weight format 'ternary'"):
        LayerFormat("ternary")


# --- the level-1 ONNX helpers agree with the exporter -----------------------------------------


def test_onnx_data_types_and_bytes_agree_with_the_exporter() -> None:
    for name in ("FLOAT", "UINT8", "INT8", "INT16", "INT32", "INT4"):
        assert getattr(_onnx, name) == getattr(onnx_tensors, name), name
    for t in (torch.randn(3, 5), torch.arange(-8, 8, dtype=torch.int16), torch.ones(0)):
        assert _onnx.le_bytes(t) == onnx_tensors.raw_bytes(t)
    for codes in (torch.tensor([1, -2, 7]), torch.arange(-8, 8).reshape(4, 4), torch.zeros(0)):
        assert _onnx.int4_bytes(codes) == onnx_tensors.pack_int4(codes, signed=True)
    assert _onnx.int4_bytes(torch.tensor([1, -2, 7])) == b"\xe1\x07"
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        _onnx.int4_bytes(torch.tensor([8]))


# --- every built-in scheme keeps the contract -----------------------------------------------


def _round_trip(scheme: WeightScheme[Any], fmt: WeightFormat, shape: tuple[int, ...]) -> None:
    """quantize -> pack -> unpack gives the same weight; nbytes counts what pack stores."""
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    q = scheme.quantize(w.reshape(shape[0], -1), fmt)
    values = q.values.reshape(shape)
    codes = None if q.codes is None else q.codes.reshape(shape)
    q = type(q)(values, codes, q.qparams)
    stored = scheme.pack("layer.weight", fmt, q)
    assert {k.removeprefix("layer.weight") for k in stored} == set(scheme.parts)
    assert scheme.nbytes(fmt, shape) == sum(t.numel() * t.element_size() for t in stored.values())
    back = scheme.unpack(stored, "layer.weight", fmt, shape)
    assert torch.equal(back.values, values)
    if codes is None:
        assert back.codes is None
    else:
        assert back.codes is not None and back.codes.dtype == torch.int32
        assert torch.equal(back.codes.long(), codes.long())
    # the integer kernel against its simulated twin: within half a step of its scale
    iw = scheme.integer_weight(fmt, back)
    if fmt.is_float:
        assert iw is None
        return
    assert iw is not None and iw.w_i.dtype == torch.int64 and iw.scale.dtype == torch.float64
    rows = shape[0]
    scale = (
        iw.scale[:, None]
        if iw.group_size is None
        else iw.scale.repeat_interleave(iw.group_size, dim=1)
    )
    approx = iw.w_i.reshape(rows, -1).double() * scale
    err = (approx - values.reshape(rows, -1).double()).abs()
    assert bool((err <= scale / 2 + 1e-12).all())


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        (text, shape)
        for text in BUILTIN_FORMATS
        for shape in [(6, 64), (4, 8, 2, 2)]
        # a grouped format needs its group to divide the layer's inputs
        if math.prod(shape[1:]) % (weight_format(text).group_size or 1) == 0
    ],
)
def test_builtin_scheme_round_trip_bytes_and_integer_twin(
    text: str, shape: tuple[int, ...]
) -> None:
    fmt = weight_format(text)
    _round_trip(scheme_for(fmt), fmt, shape)


def test_affine_integer_weight_is_exactly_the_simulated_weight() -> None:
    fmt = weight_format("int4g32")
    scheme = scheme_for(fmt)
    q = scheme.quantize(_matrix(), fmt, scale="mse")
    iw = scheme.integer_weight(fmt, q)
    assert isinstance(q.qparams, AffineQParams)
    full = iw.scale.repeat_interleave(32, dim=1)
    assert torch.equal((iw.w_i.double() * full).float(), q.values)


# --- the worked example: ternary weights ------------------------------------------------------


def test_the_doc_shows_the_example_module_verbatim() -> None:
    doc = (ROOT / "docs" / "adding-a-format.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    module = (ROOT / "tests" / "engine" / "quant" / "ternary_format.py").read_text()
    assert module in blocks


def test_ternary_hand_computed_values_and_bytes(ternary: WeightScheme[Any]) -> None:
    # row 0: mean|w| = 3.7 / 4, threshold 0.6475; |1.0| and |-2.0| exceed it: a = 1.5
    # row 1: all zero: codes 0, scale 1
    w = torch.tensor([[1.0, -0.2, 0.5, -2.0], [0.0, 0.0, 0.0, 0.0]])
    fmt = weight_format("ternary")
    q = ternary.quantize(w, fmt)
    assert q.codes is not None and q.codes.tolist() == [[1, 0, 0, -1], [0, 0, 0, 0]]
    assert q.values.tolist() == [[1.5, 0.0, 0.0, -1.5], [0.0, 0.0, 0.0, 0.0]]
    assert isinstance(q.qparams, TernaryQParams) and q.qparams.scale.tolist() == [1.5, 1.0]
    stored = ternary.pack("w", fmt, q)
    # codes + 1 = [2, 1, 1, 0], [1, 1, 1, 1] at 2 bits, lowest first: 0x16, 0x55
    assert stored["w.codes"].tolist() == [0x16, 0x55]
    assert ternary.nbytes(fmt, (2, 4)) == 2 + 8


@pytest.mark.parametrize("shape", [(6, 64), (4, 8, 2, 2), (3, 5)])
def test_ternary_round_trip_and_integer_twin(
    ternary: WeightScheme[Any], shape: tuple[int, ...]
) -> None:
    _round_trip(ternary, weight_format("ternary"), shape)
    q = ternary.quantize(_matrix(*shape[:1], math.prod(shape[1:])), weight_format("ternary"))
    iw = ternary.integer_weight(weight_format("ternary"), q)
    assert torch.equal((iw.w_i.double() * iw.scale[:, None]).float(), q.values)


def test_ternary_gptq_gives_ternary_values_with_less_output_error(
    ternary: WeightScheme[Any],
) -> None:
    gen = torch.Generator().manual_seed(3)
    w, x = _matrix(8, 32), torch.randn(256, 32, generator=gen) @ torch.randn(32, 32, generator=gen)
    fmt = weight_format("ternary")
    nearest = ternary.quantize(w, fmt)
    gptq = ternary.quantize(w, fmt, hessians=[hessian_from_inputs(x)])
    assert gptq.codes is not None and set(gptq.codes.unique().tolist()) <= {-1, 0, 1}
    assert gptq.qparams is not None
    assert torch.equal(gptq.values, gptq.codes.float() * gptq.qparams.scale[:, None])
    err = [float(((w - q.values) @ x.T).square().sum()) for q in (nearest, gptq)]
    assert err[1] < err[0]


def _two_layer_ir() -> tuple[IRModel, torch.Tensor]:
    """conv (4x8x2x2, padding 1) -> flatten -> linear (6x64)."""
    gen = torch.Generator().manual_seed(0)
    args = (Ref("x"), Ref("c.weight"), Ref("c.bias"), [1, 1], [1, 1])
    conv = Node("conv", "aten.conv2d.default", args)
    flat = Node("flat", "aten.flatten.using_ints", (Ref("conv"), 1))
    fc = Node("fc", "aten.linear.default", (Ref("flat"), Ref("fc.weight"), Ref("fc.bias")))
    tensors = {
        "c.weight": torch.randn(4, 8, 2, 2, generator=gen),
        "c.bias": torch.arange(4, dtype=torch.float32),
        "fc.weight": torch.randn(6, 64, generator=gen),
        "fc.bias": torch.full((6,), 0.5),
    }
    x = torch.randn(2, 8, 3, 3, generator=gen)
    spec = (TensorSpec("x", tuple(x.shape), "float32"),)
    return IRModel(spec, (conv, flat, fc), (Ref("fc"),), tensors), x


@pytest.mark.parametrize("extra", [{}, {"outliers": 2}, {"rounding": "gptq"}])
def test_ternary_through_the_whole_engine(
    ternary: WeightScheme[Any], tmp_path: Path, extra: dict[str, Any]
) -> None:
    ir, x = _two_layer_ir()
    fmt = LayerFormat("ternary", "a8", **extra)
    plan = QuantPlan({"c": fmt, "fc": fmt})
    qm = apply(ir, plan, [(x,)])
    with torch.no_grad():
        simulated = qm.module()(x)
    # the artifact: stored, counted, reloaded bit for bit
    path = tmp_path / "model.mpq"
    save_artifact(qm, path)
    loaded = load_artifact(path)
    assert loaded.payload_bytes == predict_model_payload(qm)
    for name, q in qm.weights.items():
        assert torch.equal(loaded.quantized.weights[name].values, q.values)
    with torch.no_grad():
        assert torch.equal(loaded.module()(x), simulated)
    # integer-only execution: both layers on integers and near the simulated model (not equal:
    # activations are coded in the ranges observed on the float model, and clip beyond them)
    im = lower_to_integer(loaded.quantized)
    assert [layer.execution for layer in im.report.layers] == ["integer", "integer"]
    with torch.no_grad():
        integer = im(x)
    cosine = torch.nn.functional.cosine_similarity(integer.flatten(), simulated.flatten(), dim=0)
    assert float(cosine) > 0.99
    # ONNX: onnxruntime computes the simulated model
    exported = export_onnx(loaded.quantized)
    out = torch.from_numpy(session(exported.data).run(None, {"x": x.numpy()})[0])
    torch.testing.assert_close(out, simulated, rtol=1e-5, atol=1e-5)
    assert {r.format for r in exported.report.layers} == {"ternary"}
