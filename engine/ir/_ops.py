"""The operator allow-list: the only ops an IR graph may contain.

Ops are named as torch.export prints them (``"aten.conv2d.default"``:
namespace, op, overload) plus ``"getitem"`` for taking one output of a
multi-output op. :func:`resolve` maps a name to the ATen overload it denotes;
names off the list never reach :func:`getattr`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "ALLOWED_OPS",
    "CONV_OPS",
    "EMBEDDING_OPS",
    "FOLDABLE_OPS",
    "LINEAR_OPS",
    "MATMUL_OPS",
    "QUANTIZABLE_OPS",
    "resolve",
]

CONV_OPS = frozenset(
    {"aten.conv1d.default", "aten.conv2d.default"} | {"aten.conv1d.padding", "aten.conv2d.padding"}
)
LINEAR_OPS = frozenset({"aten.linear.default", "aten.addmm.default"})
MATMUL_OPS = frozenset({"aten.matmul.default", "aten.mm.default", "aten.bmm.default"})
EMBEDDING_OPS = frozenset({"aten.embedding.default"})
QUANTIZABLE_OPS = CONV_OPS | LINEAR_OPS | MATMUL_OPS | EMBEDDING_OPS
"""Ops whose weight operand MPQ can quantize (matmul only with a constant operand)."""

FOLDABLE_OPS = CONV_OPS | {"aten.linear.default"}
"""Ops a following eval-mode batch norm can be folded into."""

_OTHER_OPS = (
    # normalisation and activations
    "batch_norm.default",
    "layer_norm.default",
    "native_layer_norm.default",
    "relu.default",
    "hardtanh.default",
    "gelu.default",
    "silu.default",
    "sigmoid.default",
    "tanh.default",
    "hardswish.default",
    "hardsigmoid.default",
    "leaky_relu.default",
    "softmax.int",
    "_softmax.default",
    "log_softmax.int",
    "_log_softmax.default",
    "erf.default",
    "exp.default",
    "log.default",
    "sqrt.default",
    "rsqrt.default",
    "abs.default",
    "neg.default",
    "reciprocal.default",
    "clamp.default",
    "clamp.Tensor",
    "clamp_min.default",
    "clamp_max.default",
    "pow.Tensor_Scalar",
    "pow.Tensor_Tensor",
    # arithmetic
    "add.Tensor",
    "add.Scalar",
    "sub.Tensor",
    "sub.Scalar",
    "rsub.Scalar",
    "rsub.Tensor",
    "mul.Tensor",
    "mul.Scalar",
    "div.Tensor",
    "div.Scalar",
    "div.Tensor_mode",
    "where.self",
    "where.ScalarOther",
    "where.ScalarSelf",
    "masked_fill.Scalar",
    "eq.Scalar",
    "eq.Tensor",
    "ne.Scalar",
    "lt.Scalar",
    "gt.Scalar",
    "le.Scalar",
    "ge.Scalar",
    "logical_not.default",
    "bitwise_not.default",
    # pooling and reductions
    "max_pool1d.default",
    "max_pool2d.default",
    "avg_pool1d.default",
    "avg_pool2d.default",
    "adaptive_avg_pool1d.default",
    "adaptive_avg_pool2d.default",
    "mean.dim",
    "mean.default",
    "sum.dim_IntList",
    "sum.default",
    "amax.default",
    "max.dim",
    "argmax.default",
    # shape and data movement
    "flatten.using_ints",
    "view.default",
    "reshape.default",
    "_unsafe_view.default",
    "permute.default",
    "transpose.int",
    "t.default",
    "cat.default",
    "stack.default",
    "slice.Tensor",
    "select.int",
    "unsqueeze.default",
    "squeeze.dim",
    "squeeze.dims",
    "squeeze.default",
    "contiguous.default",
    "expand.default",
    "clone.default",
    "unflatten.int",
    "split.Tensor",
    "split_with_sizes.default",
    "chunk.default",
    "index_select.default",
    "gather.default",
    "pad.default",
    "constant_pad_nd.default",
    "alias.default",
    "detach.default",
    "lift_fresh_copy.default",
    "dropout.default",
    "to.dtype",
    "to.dtype_layout",
    "to.device",
    "expand_as.default",
    "index.Tensor",
    "new_ones.default",
    "__and__.Tensor",
    "linalg_vector_norm.default",
    "_to_copy.default",
    "type_as.default",
    # attention and creation
    "scaled_dot_product_attention.default",
    "fake_quantize_per_tensor_affine.default",
    "zeros.default",
    "ones.default",
    "full.default",
    "arange.default",
    "arange.start",
    "zeros_like.default",
    "ones_like.default",
    "full_like.default",
)

_MODEL_ZOO_OPS = (
    # Added for the ops real exports of common models emit (torch.export of transformers
    # ResNet/MobileNet/Segformer/GPT-2/Llama/T5/Wav2Vec2..., and what the ONNX importer maps
    # Pad/Resize/Trilu/CumSum/Tile/Mod/... to). Functional, plain-data arguments only.
    # comparisons and logic
    "lt.Tensor",
    "le.Tensor",
    "gt.Tensor",
    "ge.Tensor",
    "ne.Tensor",
    "__or__.Tensor",
    "__xor__.Tensor",
    "isnan.default",
    "isinf.default",
    # elementwise math
    "sin.default",
    "cos.default",
    "floor.default",
    "ceil.default",
    "round.default",
    "sign.default",
    "minimum.default",
    "maximum.default",
    "min.other",
    "max.other",
    "floor_divide.default",
    "remainder.Tensor",
    "remainder.Scalar",
    "fmod.Tensor",
    "fmod.Scalar",
    "masked_fill.Tensor",
    # activations
    "softplus.default",
    "elu.default",
    "selu.default",
    "prelu.default",
    "mish.default",
    "relu6.default",
    # normalisation
    "group_norm.default",
    "instance_norm.default",
    "_weight_norm.default",
    # resampling
    "upsample_nearest1d.vec",
    "upsample_nearest2d.vec",
    "_upsample_nearest_exact2d.vec",
    "upsample_linear1d.vec",
    "upsample_bilinear2d.vec",
    "upsample_bicubic2d.vec",
    # reductions and scans
    "amin.default",
    "argmin.default",
    "prod.dim_int",
    "logsumexp.default",
    "cumsum.default",
    # matrix products
    "einsum.default",
    "baddbmm.default",
    # shape, data movement and creation
    "tril.default",
    "triu.default",
    "repeat.default",
    "tile.default",
    "flip.default",
    "roll.default",
    "new_zeros.default",
    "arange.start_step",
)
"""The ops added for real models' exports, kept apart so each exporter can be checked for them."""

ALLOWED_OPS: frozenset[str] = frozenset(
    QUANTIZABLE_OPS | {"aten." + o for o in (*_OTHER_OPS, *_MODEL_ZOO_OPS)} | {"getitem"}
)


def resolve(op: str) -> Callable[..., Any]:
    """The callable an allow-listed op name denotes.

    Raises:
        KeyError: ``op`` is not on the allow-list (IR validation catches this first).
    """
    if op not in ALLOWED_OPS:
        raise KeyError(op)
    if op == "getitem":
        return operator.getitem
    _, name, overload = op.split(".")
    packet = getattr(torch.ops.aten, name)
    return getattr(packet, overload)  # type: ignore[no-any-return]
