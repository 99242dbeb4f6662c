"""Every allow-listed op exports, and its ONNX computes what torch computes.

Each case is a tiny IR (one op, plus ``getitem`` s for multi-output ops) exported
with the float exporter and run in onnxruntime against MPQ's own GraphModule:
integer and boolean outputs must match exactly, float ones to 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import onnx
import onnxruntime as ort
import pytest
import torch

from engine.io.export import CONVERTERS, export_float_onnx
from engine.ir import (
    ALLOWED_OPS,
    Device,
    DType,
    IRModel,
    Node,
    Ref,
    TensorSpec,
    Value,
    to_graph_module,
)

torch.set_num_threads(1)
_GEN = torch.Generator().manual_seed(0)
X, Y, Z, W, B = Ref("x"), Ref("y_in"), Ref("z_in"), Ref("w"), Ref("b")


def f(*shape: int) -> torch.Tensor:
    """Seeded standard-normal float32."""
    return torch.randn(*shape, generator=_GEN)


def i(lo: int, hi: int, *shape: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Seeded integers in ``[lo, hi)``."""
    return torch.randint(lo, hi, shape, generator=_GEN).to(dtype)


def nonzero(t: torch.Tensor) -> torch.Tensor:
    """``t`` with its zeros replaced by ones (divisors)."""
    return torch.where(t == 0, torch.ones_like(t), t)


@dataclass(frozen=True)
class Case:
    """One IR to export: its nodes, named inputs, stored tensors and outputs."""

    tag: str
    nodes: tuple[Node, ...]
    inputs: dict[str, torch.Tensor]
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: tuple[str, ...] = ("y",)

    def ir(self) -> IRModel:
        specs = tuple(
            TensorSpec(k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in self.inputs.items()
        )
        outs = tuple(Ref(o) for o in self.outputs)
        return IRModel(specs, self.nodes, outs, dict(self.tensors))


def case(
    op: str,
    *args: Value,
    inputs: dict[str, torch.Tensor] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
    picks: int = 0,
    tag: str = "",
    **kwargs: Value,
) -> Case:
    """``y = aten.<op>(*args, **kwargs)`` on input ``x`` (``f(2, 3, 4)`` unless given);
    ``picks``: the op returns a tuple and outputs ``y0 .. y<picks-1>`` are its items."""
    inputs = {"x": f(2, 3, 4)} if inputs is None else inputs
    nodes = [Node("y", "aten." + op, args, kwargs)]
    outputs: tuple[str, ...] = ("y",)
    if picks:
        nodes += [Node(f"y{k}", "getitem", (Ref("y"), k)) for k in range(picks)]
        outputs = tuple(f"y{k}" for k in range(picks))
    label = f"{op}-{tag}" if tag else op
    return Case(label, tuple(nodes), inputs, tensors or {}, outputs)


def xy(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"x": x, "y_in": y}


def xyz(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"x": x, "y_in": y, "z_in": z}


POS = f(2, 3, 4).abs() + 0.1
HALVES = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, -0.51])
SPECIAL = torch.tensor([1.0, math.inf, -math.inf, math.nan, 0.0, -3.0])
MASK = f(2, 3, 4) > 0
INTS = i(-9, 10, 2, 3, 4)
DIVISORS = nonzero(i(-4, 5, 2, 3, 4))
IMG = f(2, 3, 5, 6)
SEQ = f(2, 3, 7)
F32, I32, I64 = DType("float32"), DType("int32"), DType("int64")
DIVIDENDS = torch.tensor([-3.0, 3.0, 0.3, -0.3, 7.5, -7.5, 1.0, -1.0, 0.0, 5.0])
EDGE_DIVISORS = torch.tensor([1.5, -1.5, 0.1, 0.1, 2.5, -2.5, 0.0, 0.0, 0.0, -0.7])

ARITHMETIC = [
    case("add.Tensor", X, Y, inputs=xy(f(2, 3, 4), f(3, 1)), alpha=2),
    case("add.Scalar", X, 1.5),
    case("sub.Tensor", X, Y, inputs=xy(f(2, 3, 4), f(4))),
    case("sub.Scalar", X, 2, inputs={"x": INTS}),
    case("rsub.Scalar", X, 2.0),
    case("rsub.Tensor", X, Y, inputs=xy(f(2, 3, 4), f(2, 3, 4))),
    case("mul.Tensor", X, Y, inputs=xy(INTS, f(2, 3, 4))),
    case("mul.Scalar", X, 0.5, inputs={"x": INTS}),
    case("div.Tensor", X, Y, inputs=xy(INTS, DIVISORS)),
    case("div.Scalar", X, 3.0),
    case(
        "div.Tensor_mode",
        X,
        Y,
        inputs=xy(f(2, 3, 4) * 5, f(2, 3, 4)),
        rounding_mode=None,
        tag="none",
    ),
    *[
        case("div.Tensor_mode", X, Y, inputs=xy(a, d), rounding_mode=m, tag=f"{m}-{a.dtype}")
        for m in ("trunc", "floor")
        for a, d in ((f(2, 3, 4) * 5, f(2, 3, 4)), (INTS, DIVISORS))
    ],
    *[
        case(op, X, Y, inputs=xy(DIVIDENDS, EDGE_DIVISORS), tag="edges", **kw)
        for op, kw in [
            ("div.Tensor_mode", {"rounding_mode": "floor"}),
            ("div.Tensor_mode", {"rounding_mode": "trunc"}),
            ("floor_divide.default", {}),
            ("remainder.Tensor", {}),
            ("fmod.Tensor", {}),
        ]
    ],
    case("floor_divide.default", X, Y, inputs=xy(INTS, DIVISORS), tag="int"),
    case("floor_divide.default", X, Y, inputs=xy(f(2, 3, 4) * 5, f(2, 3, 4)), tag="float"),
    case("remainder.Tensor", X, Y, inputs=xy(INTS, DIVISORS), tag="int"),
    case("remainder.Tensor", X, Y, inputs=xy(f(2, 3, 4) * 5, f(2, 3, 4)), tag="float"),
    case("remainder.Scalar", X, -1.5),
    case("fmod.Tensor", X, Y, inputs=xy(INTS, DIVISORS), tag="int"),
    case("fmod.Tensor", X, Y, inputs=xy(f(2, 3, 4) * 5, f(2, 3, 4)), tag="float"),
    case("fmod.Scalar", X, 0.75),
    case("pow.Tensor_Scalar", X, 2.5, inputs={"x": POS}),
    case("pow.Tensor_Tensor", X, Y, inputs=xy(POS, f(2, 3, 4))),
    case("maximum.default", X, Y, inputs=xy(f(2, 3, 4), f(3, 4))),
    case("minimum.default", X, Y, inputs=xy(INTS, f(4))),
    case("max.other", X, Y, inputs=xy(f(2, 3, 4), f(2, 3, 4))),
    case("min.other", X, Y, inputs=xy(f(2, 3, 4), f(2, 3, 4))),
    case("maximum.default", X, Y, inputs=xy(INTS, INTS.flip(0)), tag="int"),
    case("minimum.default", X, Y, inputs=xy(MASK, MASK.flip(0)), tag="bool"),
    case("max.other", X, Y, inputs=xy(MASK, MASK.flip(0)), tag="bool"),
]
UNARY = [
    *[case(f"{op}.default", X, inputs={"x": POS}) for op in ("log", "sqrt", "rsqrt")],
    *[
        case(f"{op}.default", X)
        for op in ("erf", "exp", "abs", "neg", "reciprocal", "cos", "sin", "sign")
    ],
    *[case(f"{op}.default", X, inputs={"x": HALVES * 1.3}) for op in ("floor", "ceil")],
    case("round.default", X, inputs={"x": HALVES}),
    case("floor.default", X, inputs={"x": INTS}, tag="int"),
    *[
        case(f"{op}.default", X, inputs={"x": f(2, 3, 4) * 4})
        for op in ("relu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "silu", "mish")
    ],
    *[case(f"{op}.default", X, inputs={"x": f(2, 3, 4) * 4}) for op in ("selu", "relu6", "elu")],
    case("elu.default", X, 0.5, 2.0, 1.5, tag="scaled"),
    case("gelu.default", X),
    case("gelu.default", X, approximate="tanh", tag="tanh"),
    case("hardtanh.default", X, -0.5, 0.25),
    case("leaky_relu.default", X, 0.2),
    case("softplus.default", X, inputs={"x": f(2, 3, 4) * 15}),
    case("softplus.default", X, 2.0, 5.0, inputs={"x": f(2, 3, 4) * 5}, tag="beta"),
    case("prelu.default", X, W, inputs={"x": IMG}, tensors={"w": f(3)}),
    case("prelu.default", X, W, tensors={"w": f(1)}, tag="shared"),
    case("softmax.int", X, -1),
    case("_softmax.default", X, 1, False),
    case("log_softmax.int", X, 2),
    case("_log_softmax.default", X, 0, False),
    case("clamp.default", X, -0.5, 0.5),
    case("clamp.default", X, None, 3, inputs={"x": INTS}, tag="max-only"),
    case("clamp.Tensor", X, Y, Z, inputs=xyz(f(2, 3, 4), f(4) - 1, f(3, 1) + 1)),
    case("clamp.Tensor", X, None, Y, inputs=xy(f(2, 3, 4), f(4)), tag="max-only"),
    case("clamp_min.default", X, 0.1),
    case("clamp_max.default", X, -0.1),
]
LOGIC = [
    *[
        case(f"{op}.Scalar", X, 2, inputs={"x": INTS})
        for op in ("eq", "ne", "lt", "gt", "le", "ge")
    ],
    case("lt.Scalar", X, 2.5, inputs={"x": INTS}, tag="int-vs-float"),
    *[
        case(f"{op}.Tensor", X, Y, inputs=xy(MASK, MASK.flip(0)), tag="bool")
        for op in ("eq", "ne", "lt", "gt", "le", "ge")
    ],
    *[
        case(f"{op}.Tensor", X, Y, inputs=xy(i(0, 3, 2, 3, 4), i(0, 3, 3, 4).float()))
        for op in ("eq", "ne", "lt", "gt", "le", "ge")
    ],
    *[
        case(f"{op}.Tensor", X, Y, inputs=xy(m, f(2, 3, 4) > 0.5), tag="bool")
        for op in ("__and__", "__or__", "__xor__")
        for m in (MASK,)
    ],
    *[
        case(f"{op}.Tensor", X, Y, inputs=xy(INTS, i(0, 16, 2, 3, 4)), tag="int")
        for op in ("__and__", "__or__", "__xor__")
    ],
    case("bitwise_not.default", X, inputs={"x": MASK}, tag="bool"),
    case("bitwise_not.default", X, inputs={"x": INTS}, tag="int"),
    case("logical_not.default", X, inputs={"x": i(0, 2, 2, 3).float()}),
    case("isnan.default", X, inputs={"x": SPECIAL}),
    case("isinf.default", X, inputs={"x": SPECIAL}),
    case("isinf.default", X, inputs={"x": INTS}, tag="int"),
    case("where.self", X, Y, Z, inputs=xyz(MASK, f(2, 3, 4), f(4))),
    case("where.ScalarOther", X, Y, 0.0, inputs=xy(MASK, f(2, 3, 4))),
    case("where.ScalarSelf", X, 1, Y, inputs=xy(MASK, f(3, 4))),
    case("masked_fill.Scalar", X, Y, -1.0, inputs=xy(f(2, 3, 4), MASK)),
    case("masked_fill.Tensor", X, Y, Z, inputs=xyz(f(2, 3, 4), MASK, torch.tensor(-7.0))),
]
REDUCTIONS = [
    case("mean.dim", X, [1], True),
    case("mean.default", X),
    case("sum.dim_IntList", X, [0, 2]),
    case("sum.dim_IntList", X, [-1], inputs={"x": MASK}, tag="bool"),
    case("sum.default", X, inputs={"x": i(0, 9, 2, 3, dtype=torch.int32)}, tag="int32"),
    case("prod.dim_int", X, 1, inputs={"x": f(2, 3, 4) * 0.5 + 1}),
    case("amax.default", X, [1]),
    case("amax.default", X, [1], inputs={"x": MASK}, tag="bool"),
    case("amin.default", X, [-1], True),
    case("logsumexp.default", X, [1, 2]),
    case("argmax.default", X, inputs={"x": i(0, 3, 2, 3, 4).float()}, tag="ties"),
    case("argmax.default", X, 1, True),
    case("argmax.default", X, 1, inputs={"x": INTS}, tag="int"),
    case("argmin.default", X, -1, inputs={"x": i(0, 3, 2, 3, 4).float()}, tag="ties"),
    case("argmin.default", X, None, True, tag="all-keepdim"),
    case("max.dim", X, 1, picks=2),
    case("max.dim", X, 0, picks=2, inputs={"x": INTS}, tag="int"),
    case("max.dim", X, -1, True, picks=2, inputs={"x": i(0, 3, 2, 3, 4).float()}, tag="ties"),
    *[
        case("linalg_vector_norm.default", X, p, [-1], tag=str(p))
        for p in (2, 1, math.inf, -math.inf, 0, 3.0)
    ],
    case("linalg_vector_norm.default", X, tag="all"),
    case("linalg_vector_norm.default", X, 2, [0, 2], True, tag="keepdim"),
    case("cumsum.default", X, 1),
    case("cumsum.default", X, -1, inputs={"x": i(0, 9, 2, 3, dtype=torch.int32)}, tag="int32"),
]
SHAPES = [
    case("view.default", X, [6, 4]),
    case("reshape.default", X, [4, -1]),
    case("_unsafe_view.default", X, [24]),
    case("flatten.using_ints", X, 1),
    case("unflatten.int", X, 2, [2, 2]),
    case("unsqueeze.default", X, 1),
    case("squeeze.dim", X, 1, inputs={"x": f(2, 1, 4)}),
    case("squeeze.dims", X, [0, 2], inputs={"x": f(1, 3, 1)}),
    case("squeeze.default", X, inputs={"x": f(1, 3, 1)}),
    case("permute.default", X, [2, 0, 1]),
    case("transpose.int", X, 0, -1),
    case("t.default", X, inputs={"x": f(3, 4)}),
    case("expand.default", X, [2, 3, 4], inputs={"x": f(3, 1)}),
    case("expand_as.default", X, Y, inputs=xy(f(1, 4), f(2, 3, 4))),
    *[
        case(op, X)
        for op in ("contiguous.default", "clone.default", "alias.default", "detach.default")
    ],
    case("lift_fresh_copy.default", X),
    case("dropout.default", X, 0.5, False),
    case("to.dtype", X, I32),
    case("to.dtype_layout", X, dtype=DType("float16")),
    case("to.device", X, Device("cpu"), I64),
    case("_to_copy.default", X, dtype=F32, inputs={"x": INTS}),
    case("type_as.default", X, Y, inputs=xy(f(2, 3, 4) * 9, INTS)),
    case("cat.default", [X, Y], 1, inputs=xy(f(2, 3, 4), f(2, 1, 4))),
    case("stack.default", [X, Y], -1, inputs=xy(f(2, 3, 4), INTS)),
    case("stack.default", [X, X], tag="dim0"),
    case("slice.Tensor", X, 2, 1, 3),
    case("slice.Tensor", X, 1, None, None, 2, tag="step"),
    case("select.int", X, 1, -1),
    case("index_select.default", X, 2, Y, inputs=xy(f(2, 3, 4), torch.tensor([3, 0, 3]))),
    case("gather.default", X, 2, Y, inputs=xy(f(2, 3, 4), i(0, 4, 2, 3, 5))),
    case("index.Tensor", X, [None, Y], inputs=xy(f(2, 3, 4), torch.tensor([[2, -1], [0, 0]]))),
    case("index.Tensor", X, [Y, Z], inputs=xyz(f(2, 3, 4), i(0, 2, 5), i(-3, 3, 1)), tag="front"),
    case(
        "index.Tensor",
        X,
        [None, Y, Z],
        inputs=xyz(f(2, 3, 4, 5), i(0, 3, 2, 1), i(0, 4, 3)),
        tag="adjacent",
    ),
    case(
        "index.Tensor",
        X,
        [Y, None, Z],
        inputs=xyz(f(2, 3, 4), i(0, 2, 6), i(0, 4, 6)),
        tag="apart",
    ),
    case("split.Tensor", X, 3, 2, picks=2),
    case("split.Tensor", X, 1, picks=2, tag="dim0"),
    case("split_with_sizes.default", X, [1, 2], 1, picks=2),
    case("chunk.default", X, 3, -1, picks=2),  # 4 in 3 chunks: torch cuts [2, 2]
    case("chunk.default", X, 3, 1, picks=3, tag="even"),
    case("repeat.default", X, [2, 1, 1, 2]),
    case("tile.default", X, [2]),
    case("flip.default", X, [0, -1]),
    case("roll.default", X, [1, -3], [1, 2]),
    case("roll.default", X, [5], tag="flat"),
    case("tril.default", X, -1),
    case("triu.default", X, 1, inputs={"x": f(2, 4, 3)}),
    case("triu.default", X, inputs={"x": MASK}, tag="bool"),
]
PADS = [
    case("constant_pad_nd.default", X, [1, 2], 0.5),
    case("constant_pad_nd.default", X, [-1, 2, 1, 0], tag="crop"),
    case("constant_pad_nd.default", X, [2, 1, 0, 1, 1, 0], inputs={"x": INTS}, tag="int"),
    case("pad.default", X, [1, 2], tag="default"),
    case("pad.default", X, [1, 2, 0, 1], "constant", -3.0, tag="constant"),
    case("pad.default", X, [2, 1], "reflect", tag="reflect"),
    case("pad.default", X, [1, 2, 2, 0], "reflect", inputs={"x": IMG}, tag="reflect2d"),
    case("pad.default", X, [3, 1], "replicate", tag="replicate"),
    case("pad.default", X, [1, 2, 2, 0], "circular", inputs={"x": IMG}, tag="circular"),
]
FACTORIES = [
    case("zeros.default", [2, 3], device=Device("cpu"), pin_memory=False),
    case("ones.default", [3], dtype=I32),
    case("full.default", [2, 2], 1.5),
    case("full.default", [2], True, tag="bool"),
    case("arange.default", 5),
    case("arange.start", 2, 7, dtype=F32),
    case("arange.start_step", 0, 1, 0.25),
    case("zeros_like.default", X),
    case("ones_like.default", X, dtype=I64),
    case("full_like.default", X, 7),
    case("new_ones.default", X, [2]),
    case("new_zeros.default", X, [3, 1], inputs={"x": INTS}),
]
LAYERS = [
    case(
        "conv1d.default",
        X,
        W,
        B,
        [2],
        [1],
        [1],
        1,
        inputs={"x": SEQ},
        tensors={"w": f(4, 3, 3), "b": f(4)},
    ),
    case(
        "conv1d.padding", X, W, None, [1], "same", [2], inputs={"x": SEQ}, tensors={"w": f(4, 3, 4)}
    ),
    case(
        "conv2d.default",
        X,
        W,
        B,
        [1, 2],
        [1, 0],
        [1, 1],
        3,
        inputs={"x": IMG},
        tensors={"w": f(6, 1, 3, 3), "b": f(6)},
    ),
    case(
        "conv2d.padding",
        X,
        W,
        B,
        [1, 1],
        "valid",
        inputs={"x": IMG},
        tensors={"w": f(2, 3, 2, 2), "b": f(2)},
    ),
    case("linear.default", X, W, B, tensors={"w": f(5, 4), "b": f(5)}),
    case("linear.default", X, W, tensors={"w": f(5, 4)}, tag="no-bias"),
    case(
        "addmm.default",
        B,
        X,
        W,
        inputs={"x": f(3, 4)},
        tensors={"w": f(4, 5), "b": f(5)},
        beta=0.5,
        alpha=2.0,
    ),
    case("mm.default", X, Y, inputs=xy(f(3, 4), f(4, 2))),
    case("bmm.default", X, Y, inputs=xy(f(2, 3, 4), f(2, 4, 5))),
    case("matmul.default", X, Y, inputs=xy(f(2, 3, 4), f(4, 2))),
    case(
        "baddbmm.default", Z, X, Y, inputs=xyz(f(2, 3, 4), f(2, 4, 5), f(3, 5)), beta=0.5, alpha=2.0
    ),
    case("baddbmm.default", Z, X, Y, inputs=xyz(f(2, 3, 4), f(2, 4, 5), f(2, 3, 5)), tag="default"),
    case("einsum.default", "bij,bjk->bik", [X, Y], inputs=xy(f(2, 3, 4), f(2, 4, 5))),
    case("einsum.default", "...i,i->...", [X, Y], inputs=xy(f(2, 3, 4), f(4)), tag="ellipsis"),
    case("embedding.default", W, X, inputs={"x": i(0, 10, 2, 5)}, tensors={"w": f(10, 4)}),
    case("max_pool1d.default", X, [2], inputs={"x": SEQ}),
    case("max_pool2d.default", X, [3, 3], [2, 2], [1, 1], [1, 1], True, inputs={"x": IMG}),
    case("avg_pool1d.default", X, [3], [2], [1], False, False, inputs={"x": SEQ}),
    case("avg_pool2d.default", X, [2, 2], inputs={"x": IMG}),
    case(
        "avg_pool2d.default",
        X,
        [3, 2],
        [2, 2],
        [1, 1],
        False,
        True,
        4,
        inputs={"x": IMG},
        tag="divisor",
    ),
    case("adaptive_avg_pool1d.default", X, [1], inputs={"x": SEQ}),
    case("adaptive_avg_pool1d.default", X, [3], inputs={"x": SEQ}, tag="uneven"),
    case("adaptive_avg_pool2d.default", X, [5, 3], inputs={"x": IMG}),
    case("adaptive_avg_pool2d.default", X, [3, 4], inputs={"x": IMG}, tag="uneven"),
    case(
        "batch_norm.default",
        X,
        W,
        B,
        Y,
        Z,
        False,
        0.1,
        1e-5,
        True,
        inputs=xyz(IMG, f(3), POS[0, :, 0]),
        tensors={"w": f(3), "b": f(3)},
    ),
    case("layer_norm.default", X, [3, 4], W, B, tensors={"w": f(3, 4), "b": f(3, 4)}),
    case("layer_norm.default", X, [4], tag="plain"),
    case("native_layer_norm.default", X, [4], W, B, 1e-5, picks=3, tensors={"w": f(4), "b": f(4)}),
    case("native_layer_norm.default", X, [3, 4], None, None, 1e-3, picks=3, tag="plain"),
    case(
        "group_norm.default",
        X,
        3,
        W,
        B,
        1e-5,
        True,
        inputs={"x": f(2, 6, 5)},
        tensors={"w": f(6), "b": f(6)},
    ),
    case("group_norm.default", X, 1, inputs={"x": IMG}, tag="plain"),
    case(
        "instance_norm.default",
        X,
        W,
        B,
        None,
        None,
        True,
        0.1,
        1e-5,
        False,
        inputs={"x": IMG},
        tensors={"w": f(3), "b": f(3)},
    ),
    case(
        "instance_norm.default",
        X,
        None,
        None,
        Y,
        Z,
        False,
        0.1,
        1e-5,
        False,
        inputs=xyz(SEQ, f(3), POS[0, :, 0]),
        tag="running",
    ),
    case("_weight_norm.default", X, Y, 0, inputs=xy(f(4, 3, 2), f(4, 1, 1).abs() + 0.5)),
    case("_weight_norm.default", X, Y, -1, inputs=xy(f(4, 3), torch.tensor(2.0)), tag="whole"),
    case(
        "scaled_dot_product_attention.default",
        X,
        Y,
        Z,
        inputs=xyz(f(2, 3, 4), f(2, 5, 4), f(2, 5, 6)),
    ),
    case("scaled_dot_product_attention.default", X, X, X, is_causal=True, tag="causal"),
    case(
        "scaled_dot_product_attention.default",
        X,
        Y,
        Z,
        inputs=xyz(f(2, 6, 3, 4), f(2, 2, 5, 4), f(2, 2, 5, 3)),
        enable_gqa=True,
        tag="gqa",
    ),
    case("fake_quantize_per_tensor_affine.default", X, 0.02, 128, 0, 255),
]
RESIZE = [
    case("upsample_nearest1d.vec", X, None, [2.0], inputs={"x": SEQ}),
    case("upsample_nearest1d.vec", X, [5], None, inputs={"x": SEQ}, tag="size"),
    case("upsample_nearest1d.vec", X, [12], None, inputs={"x": SEQ}, tag="size-uneven"),
    case("upsample_nearest2d.vec", X, None, [2.0, 3.0], inputs={"x": IMG}),
    case("upsample_nearest2d.vec", X, [7, 4], None, inputs={"x": IMG}, tag="size"),
    case("_upsample_nearest_exact2d.vec", X, None, [1.5, 1.5], inputs={"x": IMG}),
    case("_upsample_nearest_exact2d.vec", X, [3, 9], None, inputs={"x": IMG}, tag="size"),
    case("upsample_linear1d.vec", X, None, False, [2.5], inputs={"x": SEQ}),
    case("upsample_linear1d.vec", X, [4], True, None, inputs={"x": SEQ}, tag="corners"),
    case("upsample_bilinear2d.vec", X, None, False, [2.0, 2.0], inputs={"x": IMG}),
    case("upsample_bilinear2d.vec", X, [7, 4], False, None, inputs={"x": IMG}, tag="size"),
    case("upsample_bilinear2d.vec", X, [3, 9], True, None, inputs={"x": IMG}, tag="corners"),
    case("upsample_bilinear2d.vec", X, [1, 4], False, None, inputs={"x": IMG}, tag="size-1"),
    case("upsample_bilinear2d.vec", X, [1, 4], True, None, inputs={"x": IMG}, tag="corners-1"),
    case("upsample_bilinear2d.vec", X, None, False, [0.5, 0.75], inputs={"x": IMG}, tag="down"),
    case("upsample_bicubic2d.vec", X, None, False, [2.0, 1.5], inputs={"x": IMG}),
    case("upsample_bicubic2d.vec", X, [8, 8], True, None, inputs={"x": IMG}, tag="corners"),
]
CASES = [*ARITHMETIC, *UNARY, *LOGIC, *REDUCTIONS, *SHAPES, *PADS, *FACTORIES, *LAYERS, *RESIZE]


def test_every_allowed_op_has_a_converter() -> None:
    missing = sorted(ALLOWED_OPS - CONVERTERS.keys())
    assert not missing, f"allow-listed ops the ONNX exporter cannot write: {missing}"


def test_every_converter_is_checked_here() -> None:
    seen = {n.op for c in CASES for n in c.nodes}
    missing = sorted(ALLOWED_OPS - seen)
    assert not missing, f"allow-listed ops without a case in {__name__}: {missing}"


def _session(data: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _params() -> list[object]:
    off_list = pytest.mark.skip(reason="an op of this case is not on the allow-list")
    return [
        pytest.param(c, id=c.tag, marks=() if {n.op for n in c.nodes} <= ALLOWED_OPS else off_list)
        for c in CASES
    ]


@pytest.mark.parametrize("c", _params())
def test_converter_matches_torch(c: Case) -> None:
    ir = c.ir()
    data = export_float_onnx(ir).data
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    with torch.no_grad():
        ref = to_graph_module(ir)(*c.inputs.values())
    want = list(ref) if isinstance(ref, tuple) else [ref]
    got = _session(data).run(None, {k: v.numpy() for k, v in c.inputs.items()})
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        out = torch.from_numpy(g)
        assert (out.dtype, tuple(out.shape)) == (w.dtype, tuple(w.shape))
        if w.dtype.is_floating_point:
            torch.testing.assert_close(out, w, rtol=1e-5, atol=1e-5, equal_nan=True)
        else:
            assert torch.equal(out, w), (out, w)
