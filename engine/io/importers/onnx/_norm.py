"""ONNX group and instance normalisation -> ``aten.group_norm.default``.

``GroupNormalization`` splits the ``C`` channels of ``x [N, C, ...]`` into ``num_groups``
groups and normalises each group of each sample over its channels and spatial positions:
``y = (x - mean) / sqrt(var + epsilon) * scale[c] + bias[c]`` (biased variance).
``InstanceNormalization`` is the same with one group per channel. Opset 18's
GroupNormalization gives ``scale``/``bias`` per group (``[num_groups]``); opset 21 per channel
(``[C]``). ATen takes them per channel, so per-group constants are repeated per channel.
torch.onnx writes ``nn.GroupNorm`` as ``Reshape -> InstanceNormalization -> Reshape -> Mul ->
Add``, which imports as ``group_norm`` with one group per reshaped channel.
"""

from __future__ import annotations

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import attr_float, attr_int
from engine.io.importers.onnx._graph import GraphBuilder, Val
from engine.io.importers.onnx._types import OnnxNode

__all__ = ["NORM_CONVERTERS"]


def _per_channel(b: GraphBuilder, n: OnnxNode, v: Val, groups: int, channels: int) -> Val:
    """``v`` as one value per channel: per-group constants are repeated ``channels/groups``."""
    if v.shape == [channels]:
        return v
    if v.shape == [groups] and v.const is not None:
        repeat = channels // groups
        return b.derived(v, f"per_channel{repeat}", lambda t: t.repeat_interleave(repeat))
    raise UnsupportedOpsError(
        f"{n.op_type} {n.name!r} has a scale/bias of shape {v.shape} for {channels} channels "
        f"in {groups} groups; MPQ needs [{channels}] (or constant [{groups}])"
    )


def _group_norm(b: GraphBuilder, n: OnnxNode, groups: int) -> Val:
    x, scale, bias = b.input(n, 0), b.input(n, 1), b.input(n, 2)
    if x.dim() < 2 or groups <= 0 or x.shape[1] % groups:
        raise CorruptFileError(
            f"{n.op_type} {n.name!r} normalises {groups} groups of an input of shape {x.shape}"
        )
    channels = x.shape[1]
    scale, bias = (_per_channel(b, n, v, groups, channels) for v in (scale, bias))
    eps = attr_float(n, "epsilon", 1e-5)
    return b.emit("aten.group_norm.default", x, groups, scale, bias, eps, False)


def group_normalization(b: GraphBuilder, n: OnnxNode) -> Val:
    """``group_norm(x, num_groups, scale, bias, epsilon)``."""
    return _group_norm(b, n, attr_int(n, "num_groups", 0))


def instance_normalization(b: GraphBuilder, n: OnnxNode) -> Val:
    """``group_norm(x, C, scale, B, epsilon)``: one group per channel."""
    x = b.input(n, 0)
    return _group_norm(b, n, x.shape[1] if x.dim() >= 2 else 0)


NORM_CONVERTERS = {
    "GroupNormalization": group_normalization,
    "InstanceNormalization": instance_normalization,
}
