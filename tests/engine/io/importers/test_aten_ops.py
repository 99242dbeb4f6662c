"""The ATen ops real models export: torch.export -> IR -> fx matches eager torch, op by op."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.io.importers import exported_program_to_ir
from engine.ir import infer_meta, load_ir, save_ir, to_graph_module
from engine.ir._ops import _MODEL_ZOO_OPS, ALLOWED_OPS

torch.manual_seed(0)
X4, X3, X2 = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6), torch.randn(4, 6)
Y2 = torch.randn(4, 6)
INTS = torch.arange(-6, 6).reshape(3, 4)


@dataclass
class Case:
    """``fn(module, *args)`` as a module's forward; ``ops`` must appear in the IR."""

    ops: tuple[str, ...]
    fn: Callable[..., torch.Tensor]
    args: tuple[torch.Tensor, ...]
    modules: list[nn.Module] = field(default_factory=list)


class _Probe(nn.Module):
    def __init__(self, case: Case) -> None:
        super().__init__()
        self.fn = case.fn
        self.mods = nn.ModuleList(case.modules)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(self, *args)


CASES = {
    "compare": Case(
        ("lt.Tensor", "le.Tensor", "gt.Tensor", "ge.Tensor", "ne.Tensor", "__or__.Tensor",
         "__xor__.Tensor"),
        lambda s, x, y: ((x <= y) & (x < y) | (x > y) ^ (x >= y)) | (x != y), (X2, Y2)),
    "isnan_isinf": Case(("isnan.default", "isinf.default"),
                        lambda s, x: torch.isnan(x.log()).float() + torch.isinf(1 / x).float(),
                        (torch.tensor([-1.0, 0.0, 1.0]),)),
    "sin_cos": Case(("sin.default", "cos.default"), lambda s, x: x.sin() * x.cos(), (X2,)),
    "rounding": Case(("floor.default", "ceil.default", "round.default", "sign.default"),
                     lambda s, x: x.floor() + x.ceil() * 2 + x.round() * 3 + x.sign(), (X2 * 3,)),
    "min_max": Case(("minimum.default", "maximum.default", "min.other", "max.other"),
                    lambda s, x, y: torch.minimum(x, y) + torch.maximum(x, y) * 2
                    + torch.min(x, y) * 3 + torch.max(x, y) * 4, (X2, Y2)),
    "int_division": Case(("floor_divide.default", "remainder.Scalar", "remainder.Tensor"),
                         lambda s, i: i // 3 + i % 5 + torch.remainder(i, i.abs() + 1), (INTS,)),
    "fmod": Case(("fmod.Tensor", "fmod.Scalar"),
                 lambda s, x, y: torch.fmod(x, y) + torch.fmod(x, 0.5), (X2, Y2.abs() + 1)),
    "masked_fill_tensor": Case(("masked_fill.Tensor",), lambda s, x, v: x.masked_fill(x > 0, v),
                               (X2, torch.tensor(-3.0))),
    "activations": Case(("softplus.default", "elu.default", "selu.default", "mish.default",
                         "relu6.default"),
                        lambda s, x: F.softplus(x) + F.elu(x) + F.selu(x) + F.mish(x)
                        + F.relu6(x * 4), (X2,)),
    "prelu": Case(("prelu.default",), lambda s, x: s.mods[0](x), (X4,), [nn.PReLU(4)]),
    "group_norm": Case(("group_norm.default",), lambda s, x: s.mods[0](x), (X4,),
                       [nn.GroupNorm(2, 4)]),
    "instance_norm": Case(("instance_norm.default",), lambda s, x: s.mods[0](x), (X4,),
                          [nn.InstanceNorm2d(4, affine=True)]),
    # of stored tensors it is folded at import (test_export_to_ir); computed, it stays an op
    "weight_norm": Case(("_weight_norm.default",),
                        lambda s, x: torch._weight_norm(x + 1.0, x.abs().sum((1, 2), True), 0),
                        (X3,)),
    "upsample_nearest": Case(("upsample_nearest2d.vec", "upsample_nearest1d.vec"),
                             lambda s, x, y: F.interpolate(x, scale_factor=2).mean()
                             + F.interpolate(y, size=9), (X4, X3)),
    "upsample_nearest_exact": Case(("_upsample_nearest_exact2d.vec",),
                                   lambda s, x: F.interpolate(x, size=(9, 4),
                                                              mode="nearest-exact"), (X4,)),
    "upsample_linear": Case(("upsample_linear1d.vec", "upsample_bilinear2d.vec"),
                            lambda s, x, y: F.interpolate(x, scale_factor=1.5, mode="bilinear")
                            .mean() + F.interpolate(y, size=9, mode="linear",
                                                    align_corners=True), (X4, X3)),
    "upsample_bicubic": Case(("upsample_bicubic2d.vec",),
                             lambda s, x: F.interpolate(x, scale_factor=2, mode="bicubic"), (X4,)),
    "reductions": Case(("amin.default", "argmin.default", "prod.dim_int", "logsumexp.default"),
                       lambda s, x: x.amin(-1) + x.argmin(-1) + x.prod(-1)
                       + torch.logsumexp(x, -1), (X2,)),
    "cumsum": Case(("cumsum.default",), lambda s, x: x.cumsum(-1), (X3,)),
    "einsum": Case(("einsum.default",), lambda s, x, y: torch.einsum("bij,bkj->bik", x, y),
                   (X3, X3)),
    "baddbmm": Case(("baddbmm.default",), lambda s, a, x, y: torch.baddbmm(a, x, y, alpha=0.5),
                    (torch.randn(2, 4, 4), X3, X3.transpose(1, 2))),
    "masks_and_tiling": Case(("tril.default", "triu.default", "repeat.default", "tile.default"),
                             lambda s, x: torch.tril(x).repeat(2, 1)
                             + torch.triu(x, 1).tile((2, 1)), (X2,)),
    "flip_roll": Case(("flip.default", "roll.default"),
                      lambda s, x: x.flip(-1) + torch.roll(x, 2, 0), (X2,)),
    "creation": Case(("new_zeros.default", "arange.start_step"),
                     lambda s, x: x.new_zeros(6) + torch.arange(1, 13, 2, dtype=torch.float32) + x,
                     (X2,)),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_exported_op_matches_eager_torch(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    case = CASES[name]
    model = _Probe(case).eval()
    ir = exported_program_to_ir(torch.export.export(model, case.args))
    assert {"aten." + op for op in case.ops} <= {n.op for n in ir.nodes}
    save_ir(ir, tmp_path / "m.ir")
    with torch.no_grad():
        want = model(*case.args)
        for candidate in (ir, load_ir(tmp_path / "m.ir")):
            torch.testing.assert_close(to_graph_module(candidate)(*case.args), want)
    assert infer_meta(ir)[ir.outputs[0].name] == (tuple(want.shape), want.dtype)


def test_every_added_op_is_allowed_and_tested() -> None:
    added = {"aten." + op for op in _MODEL_ZOO_OPS}
    assert added <= ALLOWED_OPS
    assert {"aten." + op for c in CASES.values() for op in c.ops} == added
