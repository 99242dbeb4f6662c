"""The values of MPQ's IR: references, dtype/device/layout tags, specs, nodes.

Node arguments are plain data -- ``None``, ``bool``, ``int``, ``float``, ``str``,
:class:`Ref` (a value by name), :class:`DType`, :class:`Device`, :class:`Layout`,
:class:`MemoryFormat` and lists of these. Nothing here can name a Python callable or
carry code. :func:`encode_value` / :func:`decode_value` are the JSON form of a
node argument (tags ``{"ref": name}``, ``{"dtype": name}``, ...; non-finite floats as
``{"float": "inf"}``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

import torch

from engine.errors import InvalidIRError

__all__ = [
    "TORCH_DTYPES",
    "BatchDim",
    "BatchSite",
    "DType",
    "Device",
    "Layout",
    "MemoryFormat",
    "Node",
    "Ref",
    "TensorSpec",
    "Value",
    "decode_value",
    "encode_value",
]

TORCH_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        *(torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64),
        *(torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool),
    )
}
_LAYOUTS = {"strided": torch.strided}
_MEMORY_FORMATS = {
    "contiguous_format": torch.contiguous_format,
    "preserve_format": torch.preserve_format,
    "channels_last": torch.channels_last,
}


@dataclass(frozen=True)
class Ref:
    """A reference to an input, a tensor, or a node's output, by name."""

    name: str


@dataclass(frozen=True)
class DType:
    """A torch dtype argument, by name (``"float32"``)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in TORCH_DTYPES:
            raise InvalidIRError(f"unknown dtype {self.name!r}; known: {sorted(TORCH_DTYPES)}")

    @property
    def torch(self) -> torch.dtype:
        return TORCH_DTYPES[self.name]


@dataclass(frozen=True)
class Device:
    """A device argument; only ``"cpu"`` is allowed."""

    name: str = "cpu"

    def __post_init__(self) -> None:
        if self.name != "cpu":
            raise InvalidIRError(f"device {self.name!r} in the graph; MPQ runs models on 'cpu'")


@dataclass(frozen=True)
class Layout:
    """A tensor layout argument; only ``"strided"``."""

    name: str = "strided"

    def __post_init__(self) -> None:
        if self.name not in _LAYOUTS:
            raise InvalidIRError(f"layout {self.name!r} is not supported; only 'strided'")


@dataclass(frozen=True)
class MemoryFormat:
    """A memory-format argument (``"contiguous_format"``, ...)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in _MEMORY_FORMATS:
            raise InvalidIRError(f"memory format {self.name!r} is not supported")


Value: TypeAlias = (
    bool | int | float | str | Ref | DType | Device | Layout | MemoryFormat | list["Value"] | None
)


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: name, static shape and dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        DType(self.dtype)
        if not all(isinstance(d, int) and d >= 0 for d in self.shape):
            raise InvalidIRError(f"{self.name!r} has shape {self.shape}; need non-negative ints")


@dataclass(frozen=True)
class BatchSite:
    """An integer argument of a node that is ``coeff`` times the batch size.

    ``path`` locates it: ``(2,)`` is ``args[2]``, ``(1, 0)`` is ``args[1][0]``, and a
    string first element names a keyword argument (``("size", 0)``).
    """

    node: str
    path: tuple[int | str, ...]
    coeff: int

    def __post_init__(self) -> None:
        ok = (
            bool(self.path)
            and isinstance(self.path[0], int | str)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in self.path[1:])
        )
        if not ok or not isinstance(self.coeff, int) or self.coeff < 1:
            raise InvalidIRError(f"malformed batch site {self!r}")


@dataclass(frozen=True)
class BatchDim:
    """How a graph stored at batch ``size`` runs at any batch ``n``.

    The graph as stored is a valid static graph at batch ``size``. At batch ``n``,
    dimension 0 of each input in ``inputs`` becomes ``n``, every :class:`BatchSite`
    becomes ``coeff * n``, and output ``i``'s dimension 0 becomes ``outputs[i] * n``
    (``0``: that output has no batch dimension).
    """

    size: int
    inputs: tuple[str, ...]
    sites: tuple[BatchSite, ...] = ()
    outputs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1 or not self.inputs:
            raise InvalidIRError(f"malformed batch dimension {self!r}")
        if not all(isinstance(c, int) and c >= 0 for c in self.outputs):
            raise InvalidIRError(f"malformed batch dimension outputs {self.outputs!r}")


@dataclass(frozen=True)
class Node:
    """One operator application: ``name = op(*args, **kwargs)``."""

    name: str
    op: str
    args: tuple[Value, ...] = ()
    kwargs: Mapping[str, Value] = field(default_factory=dict)

    def arg_at(self, path: tuple[int | str, ...]) -> Value:
        """The argument at ``path`` (see :class:`BatchSite`): ``args[i][j]`` or ``kwargs[k][j]``.

        Raises:
            IndexError, KeyError, TypeError: nothing is at ``path``.
        """
        head, rest = path[0], path[1:]
        v = self.kwargs[head] if isinstance(head, str) else self.args[head]
        for i in rest:
            if not isinstance(v, list):
                raise TypeError(f"{v!r} is not a list")
            v = v[int(i)]
        return v

    def with_arg(self, path: tuple[int | str, ...], value: Any) -> Node:
        """A copy with the argument at ``path`` replaced by ``value``."""
        head, rest = path[0], path[1:]

        def put(v: Any, p: tuple[int | str, ...]) -> Any:
            if not p:
                return value
            out = list(v)
            out[int(p[0])] = put(v[int(p[0])], p[1:])
            return out

        if isinstance(head, str):
            return replace(self, kwargs={**self.kwargs, head: put(self.kwargs.get(head), rest)})
        args = list(self.args)
        args[head] = put(args[head], rest)
        return replace(self, args=tuple(args))

    def refs(self) -> list[str]:
        """Names this node reads, in argument order."""
        out: list[str] = []
        for v in (*self.args, *self.kwargs.values()):
            _collect_refs(v, out)
        return out


def _collect_refs(v: Value, out: list[str]) -> None:
    if isinstance(v, Ref):
        out.append(v.name)
    elif isinstance(v, list):
        for x in v:
            _collect_refs(x, out)


_TAGGED: dict[str, type[Ref | DType | Device | Layout | MemoryFormat]] = {
    "ref": Ref,
    "dtype": DType,
    "device": Device,
    "layout": Layout,
    "memory_format": MemoryFormat,
}


def encode_value(v: Value) -> Any:
    if isinstance(v, list):
        return [encode_value(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": repr(v)}
    for tag, cls in _TAGGED.items():
        if isinstance(v, cls):
            return {tag: v.name}
    return v


def decode_value(v: Any) -> Value:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    if isinstance(v, dict) and len(v) == 1:
        ((tag, name),) = v.items()
        if tag == "float" and name in ("inf", "-inf", "nan"):
            return float(name)
        if tag in _TAGGED and isinstance(name, str):
            return _TAGGED[tag](name)
    raise InvalidIRError(f"argument {str(v)[:80]!r} is not an IR value")
