"""GPTQ error-compensating rounding: by hand, against round-to-nearest, and its invariants."""

from __future__ import annotations

import functools

import pytest
import torch

from engine.quant import (
    _gptq,
    choose_qparams_affine,
    fake_quantize_affine,
    gptq_quantize,
    hessian_from_inputs,
)
from engine.quant._gptq import gptq_quantize_groups, gptq_quantize_stacked
from engine.quant.formats import weight_scheme


def _round(v: torch.Tensor, j: int) -> torch.Tensor:
    return torch.round(v)


def _correlated(seed: int, n: int = 48, rows: int = 24, m: int = 1024):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, n, generator=g) @ torch.randn(n, n, generator=g) * 0.3
    return torch.randn(rows, n, generator=g), x


def _output_error(w: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> float:
    return float(((w - q) @ x.T).square().mean())


def test_two_columns_by_hand() -> None:
    # H = [[2, 1], [1, 2]]: H^-1 = [[2, -1], [-1, 2]] / 3, upper Cholesky U of H^-1 has
    # U01 / U00 = -1/2. Column 0: 0.4 -> 0, error 0.4 moves column 1 by -0.4 * U01/U00 = +0.2,
    # so 0.4 becomes 0.6 and rounds to 1 (round-to-nearest would give 0).
    w = torch.tensor([[0.4, 0.4]])
    h = torch.tensor([[2.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
    q = gptq_quantize(w, h, _round, damp=0.0, act_order=False)
    assert q.tolist() == [[0.0, 1.0]]
    d_rtn, d_gptq = torch.tensor([0.4, 0.4]), torch.tensor([0.4, -0.6])
    assert d_gptq @ h.float() @ d_gptq < d_rtn @ h.float() @ d_rtn  # 0.56 < 0.96


def test_diagonal_hessian_equals_round_to_nearest() -> None:
    w, _ = _correlated(0)
    qp = choose_qparams_affine(w, bits=3, axis=0)
    h = torch.diag(torch.rand(w.shape[1], generator=torch.Generator().manual_seed(1)) + 0.5)
    q = gptq_quantize(w, h.double(), lambda v, j: fake_quantize_affine(v, qp), act_order=False)
    assert torch.equal(q, fake_quantize_affine(w, qp))


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("act_order", [False, True])
def test_lower_output_error_than_round_to_nearest(bits: int, act_order: bool) -> None:
    w, x = _correlated(bits)
    qp = choose_qparams_affine(w, bits=bits, axis=0)
    quant = lambda v, j: fake_quantize_affine(v, qp)  # noqa: E731
    q = gptq_quantize(w, hessian_from_inputs(x), quant, act_order=act_order)
    rtn = fake_quantize_affine(w, qp)
    assert _output_error(w, q, x) < 0.75 * _output_error(w, rtn, x)  # seen: ~0.45x
    assert torch.equal(fake_quantize_affine(q, qp), q)  # every weight on the grid


def test_block_size_does_not_change_the_result() -> None:
    w, x = _correlated(7)
    qp = choose_qparams_affine(w, bits=3, axis=0)
    h = hessian_from_inputs(x)
    quant = lambda v, j: fake_quantize_affine(v, qp)  # noqa: E731
    ref = gptq_quantize(w, h, quant, block_size=1)
    for block in (5, 16, 128):
        torch.testing.assert_close(gptq_quantize(w, h, quant, block_size=block), ref)


def test_weights_already_on_the_grid_are_a_fixed_point() -> None:
    w, x = _correlated(3)
    qp = choose_qparams_affine(w, bits=4, axis=0)
    on_grid = fake_quantize_affine(w, qp)
    q = gptq_quantize(on_grid, hessian_from_inputs(x), lambda v, j: fake_quantize_affine(v, qp))
    assert torch.equal(q, on_grid)
    assert not torch.equal(w, on_grid)  # and the input was not modified


def test_dead_inputs_and_bad_shapes() -> None:
    w, x = _correlated(4)
    x[:, 5] = 0.0  # an input that never fires
    qp = choose_qparams_affine(w, bits=4, axis=0)
    q = gptq_quantize(w, hessian_from_inputs(x), lambda v, j: fake_quantize_affine(v, qp))
    assert torch.isfinite(q).all()
    with pytest.raises(ValueError, match="columns"):
        gptq_quantize(w, torch.eye(3, dtype=torch.float64), _round)


def test_the_factor_is_reused_for_the_same_hessian_and_remade_after_a_change() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(256, 16, generator=gen)
    h = hessian_from_inputs(x)
    w = torch.randn(4, 16, generator=gen)

    def rnd(values: torch.Tensor, column: int) -> torch.Tensor:
        return values.round()

    first = gptq_quantize(w, h, rnd)
    again = gptq_quantize(w, h, rnd)  # from the kept factor
    fresh = gptq_quantize(w, h.clone(), rnd)  # another tensor: factored anew
    assert torch.equal(first, again) and torch.equal(first, fresh)
    v = torch.randn(16, generator=gen, dtype=h.dtype)
    h.add_(10.0 * torch.outer(v, v))  # in place: a new version, the old factor is not used
    changed = gptq_quantize(w, h, rnd)
    assert torch.equal(changed, gptq_quantize(w, h.clone(), rnd))
    assert not torch.equal(changed, first)  # the change matters, so a stale factor would show


@pytest.mark.parametrize("stacked_rows", [2048, 24, 1])  # all in one stack, 2 a stack, none
def test_stacked_quantizers_give_what_each_gives_alone(
    stacked_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_gptq, "STACKED_ROWS", stacked_rows)
    w, x = _correlated(11, n=40, rows=12)
    h, h2 = hessian_from_inputs(x), hessian_from_inputs(x.flip(1))
    affine = weight_scheme("affine")
    factories = [
        functools.partial(affine.column_quantizer, choose_qparams_affine(w, bits=b, axis=0))
        for b in (2, 3, 5)
    ]
    # one Hessian, and two conv groups (rows g * 6 ... use the g-th)
    for hessians in ([h], [h, h2]):
        alone = [gptq_quantize_groups(w, hessians, f) for f in factories]
        stacked = gptq_quantize_stacked(w, hessians, factories)
        for a, s in zip(alone, stacked, strict=True):
            torch.testing.assert_close(s, a, rtol=0, atol=1e-6)
