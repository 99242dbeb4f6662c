"""Uniform (affine) quantization primitives.

For a real tensor ``x``, scale ``s > 0``, integer zero point ``z`` and code range
``[qmin, qmax]``::

    quantize:    q = clamp(round(x * (1 / s)) + z, qmin, qmax)     (round half to even)
    dequantize:  x_hat = (q - z) * s
    fake:        x_hat = dequantize(quantize(x))

``1 / s`` is taken in float32 and multiplied, as PyTorch's
``fake_quantize_per_{tensor,channel}_affine`` kernels do, so the results are
bit-identical to them for the same qparams.

Granularity: per tensor (one ``s``, ``z``), per channel along ``axis`` (one per
slice), or per group: the weight seen as ``[C_out, N]`` (all dims after the
first flattened, i.e. a conv's ``C_in/groups * kh * kw``) is split into
``N / group_size`` groups of consecutive inputs, each with its own scale.

Weights use a symmetric scale on the full two's-complement range
``q in [-2^(b-1), 2^(b-1) - 1]``, ``z = 0``, ``s = a / (2^(b-1) - 1)`` with ``a``
the clipping magnitude (``max |x|``, or ``r * max |x|`` with the ratio ``r``
minimising the squared error -- the MSE method). The extra code ``-2^(b-1)``
lies beyond ``-a``: the ``max`` method never reaches it, but clipped weights
(MSE) and GPTQ's error-compensated ones may use it. At 2 bits the grid is
``{-2s, -s, 0, s}`` where the restricted range would leave ternary
``{-s, 0, s}``: a fourth level for the same two bits. Activations use the asymmetric
range ``[0, 2^b - 1]`` with ``s = (hi - lo) / (2^b - 1)``, ``z = round(-lo / s)``,
and ``[lo, hi]`` widened to contain 0 so that 0 is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "AffineQParams",
    "choose_qparams_affine",
    "dequantize_affine",
    "fake_quantize_affine",
    "quantize_affine",
    "signed_range",
    "unsigned_range",
]

ScaleMethod = Literal["max", "mse"]


@dataclass(frozen=True, eq=False)
class AffineQParams:
    """Scale and zero point of an affine quantizer, with its granularity.

    ``scale`` (float32) and ``zero_point`` (int32) are 0-d for per tensor,
    ``[x.shape[axis]]`` per channel, ``[C_out, N / group_size]`` per group
    (``axis`` is then 0).
    """

    scale: torch.Tensor
    zero_point: torch.Tensor
    qmin: int
    qmax: int
    axis: int | None = None
    group_size: int | None = None

    def __post_init__(self) -> None:
        if self.scale.dtype != torch.float32 or self.zero_point.dtype != torch.int32:
            raise ValueError("scale must be float32 and zero_point int32")
        if self.scale.shape != self.zero_point.shape:
            raise ValueError(f"scale {self.scale.shape} and zero point shapes differ")
        if not bool((self.scale > 0).all()):
            raise ValueError("scales must be positive")
        if self.qmin >= self.qmax:
            raise ValueError(f"empty code range [{self.qmin}, {self.qmax}]")
        if self.group_size is not None and (self.axis != 0 or self.group_size < 1):
            raise ValueError("per-group quantization needs axis=0 and group_size >= 1")


def signed_range(bits: int) -> tuple[int, int]:
    """Full signed range ``(-2^(b-1), 2^(b-1) - 1)`` for 2 <= b <= 16."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in 2..16, got {bits}")
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def unsigned_range(bits: int) -> tuple[int, int]:
    """Unsigned range ``(0, 2^b - 1)`` for 2 <= b <= 16."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in 2..16, got {bits}")
    return 0, 2**bits - 1


def choose_qparams_affine(
    x: torch.Tensor,
    *,
    bits: int,
    symmetric: bool = True,
    axis: int | None = None,
    group_size: int | None = None,
    method: ScaleMethod = "max",
    ratios: int = 40,
    min_ratio: float = 0.3,
) -> AffineQParams:
    """Qparams for ``x`` at ``bits`` bits.

    Args:
        x: the real tensor (float).
        bits: code width.
        symmetric: signed, ``z = 0`` and ``s = a / qmax`` (weights), or unsigned
            asymmetric (activations).
        axis: per-channel axis; None for per tensor.
        group_size: consecutive inputs per scale (needs ``axis=0``); must divide
            the flattened input size ``N``.
        method: ``"max"`` uses the full range; ``"mse"`` tries ``ratios`` clipping
            ratios evenly spaced in ``[min_ratio, 1]`` and keeps, per scale, the
            one with the least squared error of ``fake_quantize_affine``.
    """
    qmin, qmax = signed_range(bits) if symmetric else unsigned_range(bits)
    view = _grouped_view(x.detach().float(), axis, group_size)  # [..., reduced]
    if symmetric:
        lo, hi = -view.abs().amax(-1), view.abs().amax(-1)
    else:
        lo, hi = view.amin(-1).clamp(max=0.0), view.amax(-1).clamp(min=0.0)
    if method == "max":
        return _qparams(lo, hi, qmin, qmax, symmetric, axis, group_size)
    if method != "mse":
        raise ValueError(f"method must be 'max' or 'mse', got {method!r}")
    best: AffineQParams | None = None
    best_err = torch.full(lo.shape, float("inf"))
    for r in torch.linspace(1.0, min_ratio, ratios).tolist():
        qp = _qparams(lo * r, hi * r, qmin, qmax, symmetric, axis, group_size)
        err = _view_error(view, qp)
        if best is None:
            best, best_err = qp, err
            continue
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = AffineQParams(
            torch.where(better, qp.scale, best.scale),
            torch.where(better, qp.zero_point, best.zero_point),
            qmin,
            qmax,
            axis,
            group_size,
        )
    assert best is not None
    return best


def _view_error(view: torch.Tensor, qp: AffineQParams) -> torch.Tensor:
    """``sum((fake_quantize_affine(x, qp) - x)^2)`` per scale, on the grouped view of ``x``.

    The arithmetic of :func:`fake_quantize_affine` element for element (so the MSE
    search picks what it would), with the scale broadcast along the view's last
    dim instead of expanded to the tensor's shape.
    """
    scale, zp = qp.scale[..., None], qp.zero_point.float()[..., None]
    q = (torch.round(view * (1.0 / scale)) + zp).clamp_(qp.qmin, qp.qmax)
    return (q.sub_(zp).mul_(scale).sub_(view)).square_().sum(-1)


def quantize_affine(x: torch.Tensor, qp: AffineQParams) -> torch.Tensor:
    """Integer codes ``clamp(round(x * (1/s)) + z, qmin, qmax)`` as int32, shape of ``x``."""
    scale, zp = _broadcast(qp, x.shape)
    inv = 1.0 / scale
    q = torch.round(x.float() * inv) + zp
    return q.clamp(qp.qmin, qp.qmax).to(torch.int32)


def dequantize_affine(q: torch.Tensor, qp: AffineQParams) -> torch.Tensor:
    """Real values ``(q - z) * s`` as float32, shape of ``q``."""
    scale, zp = _broadcast(qp, q.shape)
    return (q.float() - zp) * scale


def fake_quantize_affine(x: torch.Tensor, qp: AffineQParams) -> torch.Tensor:
    """``dequantize_affine(quantize_affine(x))``: the value the quantized model sees."""
    return dequantize_affine(quantize_affine(x, qp), qp)


def _qparams(
    lo: torch.Tensor,
    hi: torch.Tensor,
    qmin: int,
    qmax: int,
    symmetric: bool,
    axis: int | None,
    group_size: int | None,
) -> AffineQParams:
    tiny = torch.finfo(torch.float32).tiny
    if symmetric:
        scale = (hi / qmax).clamp(min=tiny)
        zp = torch.zeros_like(scale, dtype=torch.int32)
    else:
        scale = ((hi - lo) / (qmax - qmin)).clamp(min=tiny)
        zp = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int32)
    # an all-zero slice gets scale 1 (any scale represents it exactly)
    scale = torch.where(hi - lo > 0, scale, torch.ones_like(scale))
    return AffineQParams(scale.float(), zp, qmin, qmax, axis, group_size)


def _grouped_view(x: torch.Tensor, axis: int | None, group_size: int | None) -> torch.Tensor:
    """``x`` arranged so the elements sharing one scale lie along the last dim."""
    if axis is None:
        return x.reshape(-1)
    if group_size is None:
        return x.movedim(axis, 0).reshape(x.shape[axis], -1)
    flat = x.reshape(x.shape[0], -1)
    n = flat.shape[1]
    if n % group_size:
        raise ValueError(f"group size {group_size} does not divide the {n} inputs per channel")
    return flat.reshape(x.shape[0], n // group_size, group_size)


def _broadcast(qp: AffineQParams, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point expanded to broadcast against a tensor of ``shape``."""
    s, z = qp.scale, qp.zero_point.float()
    if qp.axis is None:
        return s, z
    if qp.group_size is None:
        view = [1] * len(shape)
        view[qp.axis] = -1
        return s.reshape(view), z.reshape(view)
    n = 1
    for d in shape[1:]:
        n *= d
    s_full = s.repeat_interleave(qp.group_size, dim=1).reshape(shape)
    z_full = z.repeat_interleave(qp.group_size, dim=1).reshape(shape)
    assert s_full.shape[1:].numel() == n
    return s_full, z_full
