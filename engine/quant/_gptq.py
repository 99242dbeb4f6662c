"""GPTQ: error-compensating rounding of a weight matrix (Frantar et al., 2023).

Quantizing ``W`` (``[rows, n]``, one output channel per row) column by column,
GPTQ pushes each column's rounding error onto the columns not yet quantized,
in the direction that least increases the layer's output error
``||W X - Q X||^2`` over calibration inputs ``X`` (``[n, samples]``). With
``H = 2 X X^T / samples`` (plus damping ``lambda * mean(diag H) * I``) and
``U`` the upper Cholesky factor of ``H^-1``, after quantizing column ``j``::

    e_j = (w_j - q_j) / U[j, j]
    W[:, k] -= e_j * U[j, k]        for k > j

This is the optimal update of the remaining weights for a quadratic loss (the
Optimal Brain Surgeon step) with the inverse Hessian kept in Cholesky form.
Work is done in blocks of ``block_size`` columns so the updates to later
columns are one matrix product per block. ``act_order`` quantizes columns in
order of decreasing ``diag(H)`` (most-used inputs first), which helps at low
bit widths. Inputs that never fire (``H[j, j] == 0``) carry no information;
their weights are quantized as they are.

The quantizer is a callable ``quantize_column(values, column) -> fake-quantized
values`` so the same routine serves uniform (fixed per-row or per-group scales)
and codebook (nearest centroid) formats. When ``H`` is diagonal and
``act_order`` is off, no error propagates and GPTQ equals round-to-nearest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "QuantizeColumn",
    "gptq_quantize",
    "gptq_quantize_groups",
    "gptq_quantize_stacked",
    "hessian_from_inputs",
]

QuantizeColumn = Callable[[torch.Tensor, int], torch.Tensor]
Factor = tuple[torch.Tensor, torch.Tensor]
"""``(perm, U)``: the column order and the upper Cholesky factor of ``H^-1`` in that order."""


def hessian_from_inputs(x: torch.Tensor) -> torch.Tensor:
    """``H = 2 X^T X / m`` in float64 for layer inputs ``x`` of shape ``[m, n]``."""
    x64 = x.reshape(-1, x.shape[-1]).double()
    return 2.0 * (x64.T @ x64) / max(x64.shape[0], 1)


def gptq_quantize(
    w: torch.Tensor,
    hessian: torch.Tensor,
    quantize_column: QuantizeColumn,
    *,
    block_size: int = 128,
    damp: float = 0.01,
    act_order: bool = True,
) -> torch.Tensor:
    """Fake-quantized ``w`` (``[rows, n]``) chosen by GPTQ; ``w`` is not modified.

    Args:
        w: weights, one output channel per row.
        hessian: ``[n, n]`` from :func:`hessian_from_inputs` (summed over batches is fine).
        quantize_column: maps the current values of column ``j`` (``[rows]``) to
            their fake-quantized values, for the original column index ``j``.
        block_size: columns per lazy-update block.
        damp: relative diagonal damping ``lambda``.
        act_order: process columns by decreasing ``diag(H)``.

    Returns:
        float32 ``[rows, n]``, every column an output of ``quantize_column``.
    """
    n = w.shape[1]
    if hessian.shape != (n, n):
        raise ValueError(f"hessian is {tuple(hessian.shape)}; the weight has {n} columns")
    perm, U = _factor(hessian, damp=damp, act_order=act_order)
    order = perm.tolist()
    # transposed, [n, rows]: a column is contiguous, and so is every row of the block
    # update (3-4x faster than updating strided columns of [rows, n]; same arithmetic)
    Wt = w.detach().double()[:, perm].T.contiguous()
    Qt = torch.empty_like(Wt)
    for start in range(0, n, block_size):
        stop = min(start + block_size, n)
        B = Wt[start:stop].clone()
        U_blk = U[start:stop, start:stop]
        diag = torch.diagonal(U_blk).tolist()
        err = torch.empty_like(B)
        for i in range(stop - start):
            q = quantize_column(B[i].float(), order[start + i]).double()
            Qt[start + i] = q
            e = (B[i] - q) / diag[i]
            B[i:] -= U_blk[i, i:, None] * e[None, :]
            err[i] = e
        Wt[stop:] -= U[start:stop, stop:].T @ err
    out = torch.empty(w.shape, dtype=torch.float64)
    out[:, perm] = Qt.T
    return out.float()


_FACTORS: OrderedDict[tuple[int, int, float, bool], tuple[torch.Tensor, Factor]] = OrderedDict()
_FACTORS_KEPT = 8


def _factor(hessian: torch.Tensor, *, damp: float, act_order: bool) -> Factor:
    """The column order and the upper Cholesky factor of the damped, permuted ``H^-1``.

    The same for every format a layer is quantized in (the search quantizes one layer in
    a dozen formats in a row), so the last few are kept, keyed by the Hessian tensor's
    identity and version (an in-place change to it is a new key): an ``n = 1536`` factor
    costs about a second, the column loop that uses it a tenth of that.
    """
    key = (id(hessian), hessian._version, damp, act_order)
    hit = _FACTORS.get(key)
    if hit is not None and hit[0] is hessian:
        _FACTORS.move_to_end(key)
        return hit[1]
    n = hessian.shape[0]
    H = hessian.detach().double().clone()
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1.0
    perm = torch.argsort(torch.diagonal(H), descending=True) if act_order else torch.arange(n)
    H = H[perm][:, perm]
    H += damp * torch.diagonal(H).mean() * torch.eye(n, dtype=H.dtype)
    factor = (perm, _inverse_cholesky_upper(H))
    _FACTORS[key] = (hessian, factor)
    while len(_FACTORS) > _FACTORS_KEPT:
        _FACTORS.popitem(last=False)
    return factor


def _inverse_cholesky_upper(H: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of ``H^-1``; adds damping until ``H`` is positive definite."""
    eye = torch.eye(H.shape[0], dtype=H.dtype)
    extra = 0.0
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(H + extra * eye)
        if int(info) == 0:
            upper: torch.Tensor = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
            return upper
        extra = max(extra * 10.0, 1e-6 * float(torch.diagonal(H).mean()))
    raise ValueError("the layer's input Hessian is not positive definite even with damping")


def gptq_quantize_groups(
    w: torch.Tensor,
    hessians: list[torch.Tensor],
    quantizer_for_rows: Callable[[slice], QuantizeColumn],
) -> torch.Tensor:
    """:func:`gptq_quantize` per conv group: rows ``g * rows/G ...`` use the ``g``-th Hessian.

    Args:
        w: weights ``[rows, n]``, one output channel per row; not modified.
        hessians: ``G`` Hessians ``[n, n]``, one per conv group (``G`` divides ``rows``).
        quantizer_for_rows: the column quantizer of a slice of rows (their own scales).

    Raises:
        ValueError: ``G`` does not divide the rows.
    """
    return gptq_quantize_stacked(w, hessians, [quantizer_for_rows])[0]


def gptq_quantize_stacked(
    w: torch.Tensor,
    hessians: list[torch.Tensor],
    quantizers_for_rows: Sequence[Callable[[slice], QuantizeColumn]],
) -> list[torch.Tensor]:
    """:func:`gptq_quantize_groups` of one weight for several quantizers in one pass.

    GPTQ treats rows independently (the update of row ``r`` reads only row ``r`` and
    ``H``), so the ``F`` quantizations of ``w`` are one of ``w`` stacked ``F`` times,
    each copy's columns rounded by its own quantizer: the column loop, whose Python
    overhead is most of GPTQ's cost on layers of a few hundred rows, runs once.

    Returns:
        One float32 ``[rows, n]`` per quantizer, each what :func:`gptq_quantize_groups`
        gives with that quantizer (up to the summation order of the block updates).

    Raises:
        ValueError: ``G`` does not divide the rows.
    """
    rows = w.shape[0]
    if rows % len(hessians):
        raise ValueError(f"{len(hessians)} Hessians do not split {rows} output channels")
    per = rows // len(hessians)
    outs = [torch.empty_like(w) for _ in quantizers_for_rows]
    step = max(1, STACKED_ROWS // per)
    for g, h in enumerate(hessians):
        sl = slice(g * per, (g + 1) * per)
        for first in range(0, len(outs), step):
            columns = [q(sl) for q in quantizers_for_rows[first : first + step]]
            for out, part in zip(outs[first:], _stacked(w[sl], h, columns), strict=False):
                out[sl] = part
    return outs


STACKED_ROWS = 2048
"""Most rows one stacked pass holds: past it the block updates, not the loop, dominate
(measured here: 6 formats of a 384-row layer 1.3-1.7x faster stacked, of a 1536-row one
1.4x slower)."""


def _stacked(w: torch.Tensor, h: torch.Tensor, columns: list[QuantizeColumn]) -> list[torch.Tensor]:
    """:func:`gptq_quantize` of ``w`` with each of ``columns``, in one pass of the stack."""
    if len(columns) == 1:
        return [gptq_quantize(w, h, columns[0])]
    per = w.shape[0]

    def column(values: torch.Tensor, j: int) -> torch.Tensor:
        parts = torch.split(values, per)
        return torch.cat([c(part, j) for c, part in zip(columns, parts, strict=True)])

    return list(torch.split(gptq_quantize(w.repeat(len(columns), 1), h, column), per))
