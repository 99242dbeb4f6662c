"""Typed access to ONNX node attributes and tensor data, and axis normalisation.

A missing attribute gives the default the ONNX operator spec defines (the caller passes it);
an attribute of the wrong type means the file is damaged or hand-made wrongly, so it raises
:class:`~engine.errors.CorruptFileError` naming the node and attribute. ONNX data types map to
the torch dtypes the IR allows; others raise :class:`~engine.errors.UnsupportedOpsError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch

from engine.errors import CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._types import AttributeType, AttributeValue, OnnxNode, OnnxTensor

__all__ = [
    "TORCH_DTYPES",
    "attr_float",
    "attr_floats",
    "attr_int",
    "attr_ints",
    "attr_str",
    "attr_tensor",
    "dtype_name",
    "normalize_axis",
    "tensor_to_torch",
    "torch_dtype",
]


def _get(n: OnnxNode, name: str, kind: AttributeType) -> AttributeValue | None:
    attr = n.attributes.get(name)
    if attr is None:
        return None
    if attr.type != kind:
        raise CorruptFileError(
            f"attribute {name!r} of ONNX node {n.name!r} ({n.op_type}) has type "
            f"{attr.type.name}; the operator spec says {kind.name}"
        )
    return attr.value


def attr_int(n: OnnxNode, name: str, default: int) -> int:
    """Integer attribute ``name`` of ``n``, or ``default``."""
    v = _get(n, name, AttributeType.INT)
    return default if v is None else cast(int, v)


def attr_float(n: OnnxNode, name: str, default: float) -> float:
    """Float attribute ``name`` of ``n``, or ``default``."""
    v = _get(n, name, AttributeType.FLOAT)
    return default if v is None else float(cast(float, v))


def attr_floats(n: OnnxNode, name: str) -> list[float] | None:
    """Float-list attribute ``name`` of ``n``, or None when absent."""
    v = _get(n, name, AttributeType.FLOATS)
    return None if v is None else [float(x) for x in cast(tuple[float, ...], v)]


def attr_ints(n: OnnxNode, name: str) -> list[int] | None:
    """Integer-list attribute ``name`` of ``n``, or None when absent."""
    v = _get(n, name, AttributeType.INTS)
    return None if v is None else list(cast(tuple[int, ...], v))


def attr_str(n: OnnxNode, name: str, default: str) -> str:
    """String attribute ``name`` of ``n`` decoded as UTF-8, or ``default``."""
    v = _get(n, name, AttributeType.STRING)
    if v is None:
        return default
    assert isinstance(v, bytes)
    return v.decode("utf-8", errors="replace")


def attr_tensor(n: OnnxNode, name: str) -> OnnxTensor | None:
    """Tensor attribute ``name`` of ``n``, or None when absent."""
    v = _get(n, name, AttributeType.TENSOR)
    assert v is None or isinstance(v, OnnxTensor)
    return v


def normalize_axis(axis: int, rank: int, n: OnnxNode) -> int:
    """``axis`` in ``[-rank, rank)`` as a non-negative index.

    Raises:
        CorruptFileError: the axis is out of range for a tensor of rank ``rank``.
    """
    if not -rank <= axis < rank:
        raise CorruptFileError(
            f"ONNX node {n.name!r} ({n.op_type}) uses axis {axis} on a tensor of rank {rank}"
        )
    return axis % rank if rank else 0


TORCH_DTYPES: dict[int, torch.dtype] = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    16: torch.bfloat16,
}
"""ONNX ``TensorProto.DataType`` -> the torch dtype MPQ represents it by."""


def torch_dtype(code: int, what: str) -> torch.dtype:
    """The torch dtype of ONNX data type ``code``; ``what`` names its user for the error."""
    if code not in TORCH_DTYPES:
        known = ", ".join(dtype_name(d) for d in TORCH_DTYPES.values())
        raise UnsupportedOpsError(
            f"{what} has ONNX data type {code}; MPQ handles {known}. Export the model with "
            "one of these types."
        )
    return TORCH_DTYPES[code]


def tensor_to_torch(t: OnnxTensor, loader: Callable[[dict[str, str]], bytes]) -> torch.Tensor:
    """The contents of ``t`` as a torch tensor; external data is read through ``loader``."""
    dtype = torch_dtype(t.data_type, f"tensor {t.name!r}")
    return torch.from_numpy(t.to_numpy(loader)).to(dtype)  # bfloat16 arrives as float32


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")
