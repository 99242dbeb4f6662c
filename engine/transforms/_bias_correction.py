"""Bias correction: cancel the mean output shift that weight rounding causes.

For a layer ``y = W x + b`` whose weight is quantized to ``Q``, the output
error is ``(Q - W) x``; over calibration inputs its mean is ``(Q - W) E[x]``.
Bias correction (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019, section 4.2) folds that mean
into the bias::

    b' = b - (Q - W) E[x]

so the quantized layer's output has the float layer's mean on the calibration
data. ``W`` and ``Q`` are seen as ``[C_out, n]`` matrices; ``E[x]`` (``[n]``)
is the mean row of the layer's input matrix ``X``: the input vector of a
linear layer, the im2col patch (zero padding included) of a conv. A grouped
conv has one ``E[x]`` per group; output rows ``g * C_out/G ...`` use the
``g``-th. The correction costs nothing in the artifact: it changes the values
of a bias the model already stores, and layers without a stored bias are left
as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.ir import CONV_OPS, Node, Ref

__all__ = ["bias_operand", "bias_shift", "corrected_bias"]


def bias_shift(w: torch.Tensor, q: torch.Tensor, means: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(Q - W) E[x]``, float64 ``[C_out]``.

    Args:
        w: the float weight, output channel first (``[C_out, ...]``).
        q: its quantized values, same shape.
        means: one mean input row ``E[x]`` (``[n]``, ``n = w[0].numel()``) per group;
            the groups split the ``C_out`` rows evenly.

    Raises:
        ValueError: shapes that do not match.
    """
    if q.shape != w.shape:
        raise ValueError(f"quantized weight {tuple(q.shape)} differs from {tuple(w.shape)}")
    rows = w.shape[0]
    if not means or rows % len(means):
        raise ValueError(f"{len(means)} input means do not split {rows} output channels")
    diff = (q.double() - w.double()).reshape(rows, -1)
    per = rows // len(means)
    return torch.cat([diff[g * per : (g + 1) * per] @ m.double() for g, m in enumerate(means)])


def corrected_bias(
    b: torch.Tensor, w: torch.Tensor, q: torch.Tensor, means: Sequence[torch.Tensor]
) -> torch.Tensor:
    """``b - (Q - W) E[x]`` in the dtype of ``b`` (:func:`bias_shift`); ``b`` is not modified."""
    return (b.double() - bias_shift(w, q, means)).to(b.dtype)


def bias_operand(node: Node) -> str | None:
    """The stored bias tensor a conv, ``linear`` or ``addmm`` node adds, else None."""
    if node.op == "aten.addmm.default":
        value = node.args[0] if node.args else node.kwargs.get("self")
    elif node.op in CONV_OPS or node.op == "aten.linear.default":
        value = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
    else:
        return None
    return value.name if isinstance(value, Ref) else None
