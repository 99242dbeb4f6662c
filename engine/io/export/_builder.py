"""Building an ONNX graph from an IR: names, initializers, constants, value metadata.

A :class:`GraphBuilder` collects encoded ``NodeProto`` s and initializers while
the IR's nodes are converted one by one. IR value names are dotted identifiers
(:mod:`engine.ir`), so every name the exporter makes up contains ``/`` and can
never collide with one of them. Shapes and dtypes of every IR value come from
one run of the graph on the meta device (:func:`value_meta`): the IR has static
shapes, so shape arguments (``Reshape`` targets, ``Expand`` sizes) are written
as constants. Each node and initializer remembers the IR node whose converter
wrote it (:attr:`GraphBuilder.source`), so that :mod:`engine.io.export._batch` can
say which one ties an export to its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.io.export import _proto
from engine.io.export._tensors import onnx_dtype, raw_bytes
from engine.ir import DType, IRModel, Ref, infer_meta

__all__ = ["GraphBuilder", "Initializer", "TensorHook", "ValueMeta", "value_meta"]


@dataclass(frozen=True)
class ValueMeta:
    """Static shape and dtype of one IR value."""

    shape: tuple[int, ...]
    dtype: torch.dtype


def value_meta(model: IRModel) -> dict[str, ValueMeta]:
    """Shape and dtype of every input, tensor and tensor-valued node output of ``model``.

    Fake-quant nodes (no meta kernel in torch) pass their input's metadata through.
    """
    out = {s.name: ValueMeta(s.shape, DType(s.dtype).torch) for s in model.inputs}
    out |= {k: ValueMeta(tuple(t.shape), t.dtype) for k, t in model.tensors.items()}
    out |= {k: ValueMeta(shape, dtype) for k, (shape, dtype) in infer_meta(model).items()}
    return out


@dataclass(frozen=True, eq=False)
class Initializer:
    """One initializer: a ``TensorProto`` with ``raw_data``, and the IR node that added it."""

    name: str
    data_type: int
    dims: tuple[int, ...]
    raw: bytes
    source: str = ""

    def encode(self) -> bytes:
        """The encoded ``TensorProto``."""
        return _proto.tensor(self.name, self.data_type, self.dims, self.raw)


TensorHook = Callable[["GraphBuilder", bool], str]
"""Emits the nodes producing a stored tensor (``transpose``: want its 2-D transpose)."""


@dataclass
class GraphBuilder:
    """Accumulates the nodes and initializers of one ONNX graph.

    Attributes:
        meta: shape and dtype of each IR value.
        hooks: IR tensor name -> emitter of its value (quantized weights); other
            IR tensors become plain initializers on first use.
        tensors: the IR's tensors.
        outputs: IR name of a multi-output node (split, ``max.dim``, ...) -> the ONNX
            names of its outputs, in order; ``getitem`` nodes pick from them.
        nodes: the encoded ``NodeProto`` s, in graph order; ``sources`` the IR node
            that wrote each.
        initializers: in the order they were added.
        source: the IR node being converted ("" outside any).
        any_batch: the model runs at any batch: where a converter has the choice it
            computes a size in the graph rather than writing the values it gives
            (``arange`` as ``Range``), so that :mod:`engine.io.export._batch` can move it.
    """

    meta: dict[str, ValueMeta]
    tensors: dict[str, torch.Tensor]
    hooks: dict[str, TensorHook] = field(default_factory=dict)
    outputs: dict[str, list[str]] = field(default_factory=dict)
    nodes: list[bytes] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    initializers: list[Initializer] = field(default_factory=list)
    initializer_bytes: int = 0
    source: str = ""
    any_batch: bool = False
    _names: dict[tuple[str, bool], str] = field(default_factory=dict)
    _counter: int = 0

    def fresh(self, hint: str) -> str:
        """A new value name ``hint/<n>`` (contains ``/``: never an IR name)."""
        self._counter += 1
        return f"{hint}/{self._counter}"

    def add(
        self,
        op_type: str,
        inputs: Sequence[str],
        *,
        out: str | None = None,
        hint: str = "v",
        **attrs: Any,
    ) -> str:
        """Append a node ``op_type(inputs) -> out``; return ``out`` (made up when None)."""
        name = out if out is not None else self.fresh(f"{hint}/{op_type}")
        encoded = [_proto.attribute(k, v) for k, v in attrs.items()]
        self.nodes.append(_proto.node(op_type, inputs, [name], name=name, attributes=encoded))
        self.sources.append(self.source)
        return name

    def add_multi(
        self, op_type: str, inputs: Sequence[str], count: int, *, hint: str = "v", **attrs: Any
    ) -> list[str]:
        """Append a node ``op_type(inputs)`` with ``count`` made-up outputs; return their names."""
        names = [self.fresh(f"{hint}/{op_type}") for _ in range(count)]
        encoded = [_proto.attribute(k, v) for k, v in attrs.items()]
        self.nodes.append(_proto.node(op_type, inputs, names, name=names[0], attributes=encoded))
        self.sources.append(self.source)
        return names

    def initializer(self, name: str, data_type: int, dims: Sequence[int], raw: bytes) -> str:
        """Add an initializer with raw (already packed) data; return its name."""
        self.initializers.append(Initializer(name, data_type, tuple(dims), raw, self.source))
        self.initializer_bytes += len(raw)
        return name

    def drop_initializers(self, names: set[str]) -> None:
        """Remove the initializers called ``names`` (values the graph computes instead)."""
        dropped = [i for i in self.initializers if i.name in names]
        self.initializers = [i for i in self.initializers if i.name not in names]
        self.initializer_bytes -= sum(len(i.raw) for i in dropped)

    def constant(self, t: torch.Tensor, hint: str = "const") -> str:
        """A new initializer holding ``t``."""
        name = self.fresh(hint)
        return self.initializer(name, onnx_dtype(t.dtype), t.shape, raw_bytes(t))

    def ints(self, values: Sequence[int]) -> str:
        """A 1-D int64 constant (shapes, axes, slice bounds)."""
        return self.constant(torch.tensor(list(values), dtype=torch.int64), "ints")

    def scalar(self, value: float | int | bool, dtype: torch.dtype) -> str:
        """A 0-d constant of ``dtype``."""
        return self.constant(torch.tensor(value, dtype=dtype), "scalar")

    def value(self, v: Any, *, transpose: bool = False) -> str:
        """The ONNX name of an IR :class:`Ref` (stored tensors added on first use).

        ``transpose`` asks for the 2-D transpose of a stored tensor (a linear
        layer's ``[out, in]`` weight as the ``[in, out]`` operand of MatMul).
        """
        if not isinstance(v, Ref):
            raise TypeError(f"expected a tensor reference, got {v!r}")
        name = v.name
        if name not in self.tensors:
            assert not transpose, "only stored tensors can be transposed at export"
            return name
        key = (name, transpose)
        if key not in self._names:
            if name in self.hooks:
                self._names[key] = self.hooks[name](self, transpose)
            else:
                t = self.tensors[name]
                t = t.T if transpose else t
                out = f"{name}/T" if transpose else name
                self._names[key] = self.initializer(out, onnx_dtype(t.dtype), t.shape, raw_bytes(t))
        return self._names[key]
