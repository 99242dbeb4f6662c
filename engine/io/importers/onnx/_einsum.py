"""ONNX ``Einsum`` -> ``permute`` / ``reshape`` / ``sum`` around ``matmul`` or ``linear``.

Operands are contracted pairwise, left to right. For a pair ``A``, ``B`` each index letter is
a *batch* index (in both, and needed later), *contracted* (in both, not needed later), or
belongs to one side (*left* / *right*). Letters in one operand only and needed nowhere else
are summed out first. Then

    A[batch, left, contracted] @ B[batch, contracted, right] -> [batch, left, right]

with the left, contracted and right letters each flattened to one dim. With no batch
letters and ``B`` a constant (a weight, as in ``"bsd,df->bsf"``) the product is
``linear(A, W[right, contracted])``, so the weight stays a quantizable layer. A last
``permute`` puts the letters in the output's order. ``...`` stands for the same dims in
every operand (right-aligned). Repeated letters within an operand (diagonals, traces) and
letters whose sizes differ between operands (broadcasting) are refused.
"""

from __future__ import annotations

import math
from collections import Counter

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_str
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode

__all__ = ["EINSUM_CONVERTERS"]

_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _parse(n: OnnxNode, ranks: list[int]) -> tuple[list[str], str]:
    """The letters of each operand and of the output, ``...`` replaced by letters of its own.

    Without ``->`` the output is every letter used once, in alphabetical order, after the
    ``...`` dims (numpy's implicit mode).
    """
    equation = attr_str(n, "equation", "").replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if not all(c in _LETTERS for c in (lhs + rhs).replace("...", "").replace(",", "")):
        # ASCII only: ONNX labels are a-z/A-Z, and other letters could pass for the
        # internal stand-ins of ``...`` below
        raise CorruptFileError(f"Einsum {n.name!r}: {equation!r} uses labels other than a-z, A-Z")
    if len(terms) != len(ranks):
        raise CorruptFileError(f"Einsum {n.name!r}: {equation!r} for {len(ranks)} inputs")
    spans = [
        rank - len(t.replace("...", "")) if "..." in t else 0
        for t, rank in zip(terms, ranks, strict=True)
    ]
    ellipsis = [chr(0x100 + i) for i in range(max(spans, default=0))]  # not ONNX letters
    out_terms = []
    for term, span, rank in zip(terms, spans, ranks, strict=True):
        letters = term.replace("...", "".join(ellipsis[len(ellipsis) - span :]))
        if span < 0 or len(letters) != rank or not all(c.isalpha() for c in letters):
            raise CorruptFileError(f"Einsum {n.name!r}: {term!r} does not fit a rank-{rank} input")
        out_terms.append(letters)
    if arrow:
        out = rhs.replace("...", "".join(ellipsis))
    else:
        counts = Counter("".join(out_terms))
        once = sorted(c for c in counts if counts[c] == 1 and c not in ellipsis)
        out = "".join(ellipsis) + "".join(once)
    if len(set(out)) != len(out) or not set(out) <= set("".join(out_terms)):
        raise CorruptFileError(f"Einsum {n.name!r} has an invalid output in {equation!r}")
    return out_terms, out


def _arrange(b: GraphBuilder, v: Val, perm: list[int], shape: list[int], tag: str) -> Val:
    """``v.permute(perm).reshape(shape)``, skipping no-ops; a constant is stored so arranged."""
    identity = perm == sorted(perm)
    permuted = [v.shape[p] for p in perm]
    if identity and permuted == shape:
        return v
    if v.const is not None:
        return b.derived(v, f"einsum{perm}{shape}", lambda t: t.permute(perm).reshape(shape))
    if not identity:
        v = b.emit("aten.permute.default", v, perm, tag=tag)
    return v if permuted == shape else b.emit("aten.reshape.default", v, shape, tag=tag)


def _where(letters: str, group: list[str]) -> list[int]:
    """The positions in ``letters`` of each letter of ``group``."""
    return [letters.index(t) for t in group]


def _sum_out(b: GraphBuilder, v: Val, letters: str, keep: set[str]) -> tuple[Val, str]:
    dims = [i for i, c in enumerate(letters) if c not in keep]
    if not dims:
        return v, letters
    v = b.emit("aten.sum.dim_IntList", v, dims, False, tag="sum")
    return v, "".join(c for c in letters if c in keep)


def _contract(
    b: GraphBuilder, a: tuple[Val, str], c: tuple[Val, str], keep: set[str], size: dict[str, int]
) -> tuple[Val, str]:
    """The product of two operands over their shared letters not in ``keep``."""
    if a[0].const is not None and c[0].const is None:
        a, c = c, a
    (x, xs), (y, ys) = _sum_out(b, *a, keep | set(c[1])), _sum_out(b, *c, keep | set(a[1]))
    batch = [t for t in xs if t in ys and t in keep]
    contracted = [t for t in xs if t in ys and t not in keep]
    left, right = [t for t in xs if t not in ys], [t for t in ys if t not in xs]
    k, m, r = (math.prod(size[t] for t in g) for g in (contracted, left, right))
    weight = y.const is not None and x.const is None and x.dtype.is_floating_point
    if weight and contracted and not batch:
        x = _arrange(b, x, _where(xs, left + contracted), [size[t] for t in left] + [k], "lhs")
        w = _arrange(b, y, _where(ys, right + contracted), [r, k], "rhs")
        out = b.emit("aten.linear.default", x, w, None)
    else:
        bs = [size[t] for t in batch]
        x = _arrange(b, x, _where(xs, batch + left + contracted), [*bs, m, k], "lhs")
        y = _arrange(b, y, _where(ys, batch + contracted + right), [*bs, k, r], "rhs")
        out = b.emit("aten.matmul.default", x, y)
        left = batch + left
    shape = [size[t] for t in left + right]
    if out.shape != shape:
        out = b.emit("aten.reshape.default", out, shape, tag="unflatten")
    return out, "".join(left + right)


def einsum(b: GraphBuilder, n: OnnxNode) -> Val:
    """The einsum ``equation`` over the inputs (see the module docstring)."""
    xs = [b.input(n, i) for i in range(len(n.inputs))]
    if not xs:
        raise CorruptFileError(f"Einsum {n.name!r} has no inputs")
    terms, out = _parse(n, [x.dim() for x in xs])
    size: dict[str, int] = {}
    for x, term in zip(xs, terms, strict=True):
        if len(set(term)) != len(term):
            raise UnsupportedOpsError(
                f"Einsum {n.name!r} repeats an index within operand {term!r} (a diagonal or "
                "trace); MPQ imports einsums whose operands each use an index once"
            )
        for t, d in zip(term, x.shape, strict=True):
            if size.setdefault(t, d) != d:
                raise UnsupportedOpsError(
                    f"Einsum {n.name!r} broadcasts index {t!r} ({size[t]} vs {d}); MPQ needs "
                    "equal sizes"
                )
    operands = list(zip(xs, terms, strict=True))
    while len(operands) > 1:
        later = set(out).union(*(t for _, t in operands[2:]))
        operands = [_contract(b, operands[0], operands[1], later, size), *operands[2:]]
    v, letters = _sum_out(b, *operands[0], set(out))
    perm = [letters.index(t) for t in out]
    return _arrange(b, v, perm, [size[t] for t in out], "output")


EINSUM_CONVERTERS = {"Einsum": einsum}
