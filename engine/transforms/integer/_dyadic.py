"""Integer primitives: per-tensor activation qparams and dyadic requantization.

An integer tensor ``q`` with qparams ``(s, z, qmin, qmax)`` stands for the real
values ``s * (q - z)``. Quantizing is ``clamp(round(x * (1/s)) + z, qmin, qmax)``
with ``1/s`` in float32 and round-half-to-even -- exactly
``torch.fake_quantize_per_tensor_affine``'s arithmetic.

Requantization maps an integer accumulator ``acc`` of scale ``s_acc`` to output
qparams ``(s_o, z_o)``: ideally ``round(acc * M) + z_o`` with the real
multiplier ``M = s_acc / s_o``. Hardware has no floats, so ``M`` becomes a
*dyadic* number ``m * 2^-k`` (HAWQ-V3; Jacob et al. 2018, sec. 2.2): ``m`` an
integer below ``2^31`` and ``k`` a shift, chosen so that the multiplier uses 31
bits (relative error at most ``2^-31``): one shift per output channel for
per-channel weight scales, one shared shift where several multipliers feed one
sum (residual adds, grouped scales). The rounding rule
is round half up by shifting::

    requantize(acc) = clamp(((acc * m + 2^(k-1)) >> k) + z_o, qmin, qmax)

computed in int64 (``>>`` is an arithmetic shift, i.e. floor). It differs from
the float twin ``round_half_even(acc * M)`` only on exact ties and by the
``2^-31`` error of ``m``: at most one output step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Dyadic", "QSpec", "dyadic", "qspec_for_range", "requantize"]

_INT64_BITS = 63


@dataclass(frozen=True)
class QSpec:
    """Per-tensor activation qparams: real value ``scale * (q - zero_point)``."""

    scale: float
    zero_point: int
    qmin: int
    qmax: int

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be positive and finite, got {self.scale}")
        if not self.qmin <= self.zero_point <= self.qmax:
            raise ValueError(f"zero point {self.zero_point} outside [{self.qmin}, {self.qmax}]")

    @property
    def bits(self) -> int:
        return (self.qmax - self.qmin).bit_length()

    def max_abs_offset(self) -> int:
        """``max |q - z|`` over the code range: the largest integer magnitude it feeds."""
        return max(self.zero_point - self.qmin, self.qmax - self.zero_point)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """int64 codes ``clamp(round(x * (1/s)) + z, qmin, qmax)`` (float32 math, as torch)."""
        inv = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(self.scale, dtype=torch.float32)
        q = torch.round(x.float() * inv) + self.zero_point
        return q.clamp(self.qmin, self.qmax).to(torch.int64)

    def dequantize(self, q: torch.Tensor) -> torch.Tensor:
        """float32 ``s * (q - z)``."""
        return (q - self.zero_point).float() * torch.tensor(self.scale, dtype=torch.float32)


def qspec_for_range(lo: float, hi: float, bits: int) -> QSpec:
    """Asymmetric unsigned qparams covering ``[min(lo, 0), max(hi, 0)]`` with ``bits`` bits.

    The same rule as ``choose_qparams_affine(symmetric=False, method="max")``:
    ``s = (hi - lo) / (2^b - 1)``, ``z = clamp(-round(lo / s), 0, 2^b - 1)``, so
    real 0 is exactly representable (ReLU's clamp and zero padding stay exact).
    """
    qmax = 2**bits - 1
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        return QSpec(1.0, 0, 0, qmax)
    scale = float(torch.tensor((hi - lo) / qmax, dtype=torch.float32))
    zp = int(min(max(-round(lo / scale), 0), qmax))
    return QSpec(scale, zp, 0, qmax)


@dataclass(frozen=True)
class Dyadic:
    """Multipliers ``m * 2^-shift``: ``m`` int64 (a scalar or one per channel); ``shift``
    one int shared by every ``m``, or an int64 tensor shaped like ``m`` (one per channel).
    Every shift is in ``[1, 62]``."""

    m: torch.Tensor
    shift: int | torch.Tensor

    def real(self) -> torch.Tensor:
        """The float64 values the integers stand for."""
        return self.m.double() * torch.pow(2.0, -torch.as_tensor(self.shift, dtype=torch.float64))


def dyadic(
    multiplier: torch.Tensor | float,
    *,
    acc_bound: torch.Tensor | float = 2.0**31 - 1,
    per_channel: bool = False,
) -> Dyadic:
    """Dyadic approximation of positive multipliers.

    With one shared shift (the default; needed where products of several
    multipliers are summed before the shift), ``m`` gets 31 bits for the
    largest multiplier, fewer when ``acc_bound * m`` could leave int64
    (``acc_bound`` bounds ``|acc|``); a multiplier ``r`` times smaller than the
    largest keeps ``31 - log2 r`` bits. With ``per_channel`` every multiplier
    gets its own shift, hence its own 31 bits (fewer where its own
    ``acc_bound``, a scalar or one per multiplier, needs the room), as per-channel
    requantization on integer hardware does (TFLite's per-channel multiplier
    and shift): a channel whose weight scale is ``10^9`` times smaller than
    another's (a dead channel after batch-norm folding) keeps a precise
    multiplier instead of rounding to 0. A shift is at most 62: a multiplier
    below ``2^-32`` of an accumulator's reach then rounds to a small ``m`` (the
    product stays below half a step either way). Every multiplier is within
    ``2^-(k+1)`` of its real value (``k`` its shift).

    Raises:
        ValueError: a multiplier is not positive and finite, or is too large
            (``>= 2^30``) for a right shift.
    """
    mult = torch.as_tensor(multiplier, dtype=torch.float64)
    if not bool(torch.isfinite(mult).all()) or not bool((mult > 0).all()):
        raise ValueError("multipliers must be positive and finite")
    biggest = float(mult.max())
    if biggest >= 2.0**30:
        raise ValueError(f"multiplier {biggest} is too large for a dyadic right shift")
    if per_channel:
        return _per_channel(mult, torch.as_tensor(acc_bound, dtype=torch.float64))
    bound = float(torch.as_tensor(acc_bound, dtype=torch.float64).max())
    headroom = _INT64_BITS - 1 - math.ceil(math.log2(bound + 1))
    bits = min(31, headroom)
    if bits < 8:
        raise ValueError(f"accumulators up to {bound:.3g} leave no room for a multiplier")
    shift = bits - 1 - math.floor(math.log2(biggest))
    if shift < 1:
        raise ValueError(f"multiplier {biggest} with accumulators up to {bound:.3g} overflows")
    m = torch.round(mult * 2.0**shift).to(torch.int64)
    return Dyadic(m, shift)


def _per_channel(mult: torch.Tensor, acc_bound: torch.Tensor) -> Dyadic:
    """One shift per multiplier: ``k = bits - 1 - floor(log2 M)``, ``bits = min(31, 62 -
    ceil(log2(bound + 1)))``, capped to ``[1, 62]``."""
    bound = acc_bound.expand_as(mult)
    headroom = _INT64_BITS - 1 - torch.ceil(torch.log2(bound + 1))
    bits = headroom.clamp(max=31)
    if bool((bits < 8).any()):
        raise ValueError(
            f"accumulators up to {float(bound.max()):.3g} leave no room for a multiplier"
        )
    shift = bits - 1 - torch.floor(torch.log2(mult))
    if bool((shift < 1).any()):
        raise ValueError(f"multipliers up to {float(mult.max())} overflow their accumulators")
    shift = shift.clamp(max=_INT64_BITS - 1)
    m = torch.round(mult * torch.pow(2.0, shift)).to(torch.int64)
    return Dyadic(m, shift.to(torch.int64))


def requantize(
    acc: torch.Tensor, d: Dyadic, out: QSpec, *, axis: int | None = None
) -> torch.Tensor:
    """``clamp(((acc * m + 2^(k-1)) >> k) + z_o, qmin, qmax)`` in int64.

    Args:
        acc: int64 accumulators.
        d: the dyadic multiplier(s); per channel along ``axis`` when ``d.m`` is 1-D
            (and so is ``d.shift`` when it is per channel).
        out: the output qparams.
        axis: the channel axis of ``acc`` that ``d.m`` runs along.
    """
    if acc.dtype != torch.int64:
        raise TypeError(f"accumulators must be int64, got {acc.dtype}")
    m, shift = d.m, d.shift
    if m.dim() == 1 and axis is not None:
        view = [1] * acc.dim()
        view[axis] = -1
        m = m.reshape(view)
        if isinstance(shift, torch.Tensor):
            shift = shift.reshape(view)
    if isinstance(shift, torch.Tensor):
        half = torch.ones_like(shift) << (shift - 1)
        prod = (acc * m + half) >> shift
    else:
        prod = (acc * m + (1 << (shift - 1))) >> shift
    return (prod + out.zero_point).clamp(out.qmin, out.qmax)
