"""The state of one ONNX-to-IR conversion: values, names, emitted nodes and constant folding.

Every ONNX value becomes a :class:`Val`: a meta-device tensor (its static shape and dtype) plus,
when it is known at import time, its contents. Initializers, ``Constant`` outputs and anything
computed only from those are constants; graph inputs and everything downstream of them are
activations. :meth:`GraphBuilder.emit` applies an allow-listed ATen op: on constants it runs the
op at once and returns a new constant (so ``Shape -> Gather -> Unsqueeze -> Concat`` chains on
static shapes collapse into plain ints), otherwise it appends a :class:`~engine.ir.Node`. The
quantizable ops (conv, linear, matmul, embedding) are never folded, so their weights stay
stored tensors the later passes can find. A constant becomes a stored tensor, named after its
initializer, the first time an emitted node reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, cast

import torch

from engine.errors import ArchiveLimitError, CorruptFileError, UnsupportedOpsError
from engine.io.importers.onnx._attrs import tensor_to_torch
from engine.io.importers.onnx._names import GENERATED_PREFIX, Namespace, clean_name
from engine.io.importers.onnx._types import OnnxNode, OnnxTensor
from engine.ir import QUANTIZABLE_OPS, DType, Node, Ref, Value, resolve

__all__ = ["Arg", "GraphBuilder", "Val"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Val:
    """One ONNX value: static shape and dtype, contents if constant, IR name once it has one."""

    meta: torch.Tensor
    """A tensor on the meta device with the value's shape and dtype."""
    const: torch.Tensor | None = None
    """The contents, when known at import time."""
    ref: str | None = None
    """The IR name: an input, a node, or (once a node reads it) a stored tensor."""
    hint: str = ""
    """The name a constant is stored under (its initializer's or ONNX output's name)."""

    @property
    def shape(self) -> list[int]:
        return list(self.meta.shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.meta.dtype

    def dim(self) -> int:
        return self.meta.dim()


Arg: TypeAlias = Val | Value | Sequence["Arg"]
"""An argument of :meth:`GraphBuilder.emit`: a :class:`Val`, plain IR data, or a list/tuple."""


class GraphBuilder:
    """Accumulates the IR of one ONNX graph; see the module docstring."""

    def __init__(
        self,
        *,
        opset: int,
        fold_budget: int,
        consumers: Mapping[str, int],
        loader: Callable[[dict[str, str]], bytes],
    ) -> None:
        """Start an empty graph.

        Args:
            opset: The model's ``ai.onnx`` opset version.
            fold_budget: Most bytes constant folding may create in all.
            consumers: How many node inputs and graph outputs read each ONNX value.
            loader: Reads external tensor data (see :class:`ExternalDataReader`).
        """
        self.opset = opset
        self.loader = loader
        self.consumers = consumers
        self.values: dict[str, Val] = {}  # ONNX value name -> value
        self.nodes: list[Node] = []
        self.tensors: dict[str, torch.Tensor] = {}
        self.names = Namespace()
        self.scopes: dict[str, str] = {}  # IR node name -> ONNX node name
        self.generated: set[str] = set()  # stored tensors named by torch.onnx, not by the user
        self.onnx_node = ""  # name of the ONNX node being converted
        self._base = ""  # IR name for the nodes emitted for it
        self._index: dict[str, int] = {}  # IR node name -> position in self.nodes
        self._derived: dict[tuple[Val, str], Val] = {}
        self._reads: dict[Val, int] = {}  # readers of all the ONNX names bound to a value
        self._fold_budget = fold_budget

    def begin(self, node: OnnxNode) -> None:
        """Name the IR nodes about to be emitted after ``node`` (or its first output)."""
        self.onnx_node = node.name
        self._base = clean_name(node.name) or clean_name(next(iter(node.outputs), "")) or "node"

    # -- values --------------------------------------------------------------------------------

    def bind(self, name: str, v: Val) -> None:
        """Make ONNX value ``name`` stand for ``v`` (Identity-like nodes bind several names)."""
        self.values[name] = v
        self._reads[v] = self._reads.get(v, 0) + self.consumers.get(name, 0)

    def reads(self, v: Val) -> int:
        """How many node inputs and graph outputs read ``v``, under any of its names."""
        return self._reads.get(v, 0)

    def load(self, t: OnnxTensor) -> torch.Tensor:
        """The contents of an ONNX tensor (an initializer or a ``Constant`` value)."""
        value = tensor_to_torch(t, self.loader)
        if t.data_location == 1:  # external bytes: folding them may make as much again
            self._fold_budget += 2 * value.nbytes
        return value

    def constant(self, value: torch.Tensor, hint: str) -> Val:
        """A constant :class:`Val` holding ``value``, stored as ``hint`` if a node reads it."""
        meta = torch.empty(value.shape, dtype=value.dtype, device="meta")
        return Val(meta, const=value, hint=hint)

    def ref(self, v: Val) -> Ref:
        """``v``'s IR reference, storing a constant as a tensor the first time."""
        if v.ref is None:
            assert v.const is not None, "an activation always has an IR name"
            v.ref = self.names.tensor(v.hint or self._base)
            self.tensors[v.ref] = v.const.contiguous()
            if v.hint.startswith(GENERATED_PREFIX):
                self.generated.add(v.ref)
        return Ref(v.ref)

    def derived(self, v: Val, key: str, make: Callable[[torch.Tensor], torch.Tensor]) -> Val:
        """The constant ``make(v.const)`` (e.g. a transposed weight), stored under ``v``'s name.

        The first layout of an initializer that a node needs gets its name; another layout
        gets a suffixed name. ``key`` names the transformation (``""``: none), so each
        layout is stored once however many nodes read it.
        """
        assert v.const is not None
        if not key:
            return v
        out = self._derived.get((v, key))
        if out is None:
            out = self.constant(make(v.const).contiguous(), v.hint or self._base)
            self.ref(out)
            self._derived[(v, key)] = out
        return out

    def input(self, n: OnnxNode, i: int) -> Val:
        """Input ``i`` of ``n``; a missing required input is a corrupt model."""
        v = self.optional(n, i)
        if v is None:
            raise CorruptFileError(
                f"ONNX node {n.name!r} ({n.op_type}) lacks its required input {i}; "
                "the file is damaged or was written for another opset"
            )
        return v

    def optional(self, n: OnnxNode, i: int) -> Val | None:
        """Input ``i`` of ``n``, or None when it is omitted (absent or named ``""``)."""
        if i >= len(n.inputs) or not n.inputs[i]:
            return None
        return self.values[n.inputs[i]]

    def const(self, n: OnnxNode, i: int, what: str) -> torch.Tensor | None:
        """The contents of optional input ``i``, which must be known at import time."""
        v = self.optional(n, i)
        if v is None:
            return None
        if v.const is None:
            raise UnsupportedOpsError(
                f"the {what} of ONNX node {n.name!r} ({n.op_type}) is computed at run time; "
                "MPQ needs it constant. Export the model with fixed input shapes (no "
                "dynamic_axes / dynamic_shapes) so the exporter writes it as a constant."
            )
        return v.const

    def ints(self, n: OnnxNode, i: int, what: str) -> list[int] | None:
        """Optional constant input ``i`` as a list of Python ints."""
        t = self.const(n, i, what)
        return None if t is None else [int(x) for x in t.reshape(-1).tolist()]

    # -- emission ------------------------------------------------------------------------------

    def emit(self, op: str, *args: Arg, tag: str = "", **kwargs: Arg) -> Val:
        """Apply ``op`` to ``args``: fold it if every :class:`Val` in them is constant.

        Args:
            op: An allow-listed op name (``"aten.add.Tensor"``).
            args: Positional arguments; :class:`Val` s become references.
            tag: Suffix for the node's name (``"pad"`` -> ``conv1.pad``).
            kwargs: Keyword arguments, as ``args``.

        Returns:
            The output value (a constant when folded).
        """
        vals = [v for v in _walk([*args, *kwargs.values()]) if isinstance(v, Val)]
        # a factory (aten.full of a constant shape) has no tensor input: its shape is worked
        # out on the meta device too, so that nothing is allocated before it is charged
        meta_device = cast(Arg, torch.device("meta"))  # passed through to the op as is
        on_meta = kwargs if vals else {**kwargs, "device": meta_device}
        meta = self._run(op, args, on_meta, lambda v: v.meta)
        if op not in QUANTIZABLE_OPS and all(v.const is not None for v in vals):
            self.charge(meta.numel() * meta.element_size())
            out = self._run(op, args, kwargs, lambda v: v.const)
            return self.constant(out.clone(memory_format=torch.contiguous_format), self._base)
        name = self.names.node(f"{self._base}.{tag}" if tag else self._base)
        ir_args = tuple(self._ir(a) for a in args)
        self._index[name] = len(self.nodes)
        self.scopes[name] = self.onnx_node
        self.nodes.append(Node(name, op, ir_args, {k: self._ir(v) for k, v in kwargs.items()}))
        return Val(meta, ref=name)

    def charge(self, size: int) -> None:
        """Count ``size`` bytes of constants made at import against the folding budget.

        Raises:
            ArchiveLimitError: the budget is spent (a model can describe huge constants cheaply).
        """
        if size > self._fold_budget:
            raise ArchiveLimitError(
                f"ONNX node {self.onnx_node!r} computes a {size}-byte constant, over what is "
                f"left of the model's limit for constants made at import ({self._fold_budget} "
                "bytes); the model is likely malformed, or raise the limit"
            )
        self._fold_budget -= size

    def producer(self, v: Val) -> Node | None:
        """The emitted node whose output ``v`` is, if any."""
        i = self._index.get(v.ref or "")
        return self.nodes[i] if i is not None else None

    def replace_node(self, node: Node) -> None:
        """Swap the emitted node of the same name for ``node`` (e.g. to give it a bias)."""
        self.nodes[self._index[node.name]] = node

    def _ir(self, a: Arg) -> Value:
        if isinstance(a, Val):
            return self.ref(a)
        if isinstance(a, list | tuple):
            return [self._ir(x) for x in a]
        assert not isinstance(a, Sequence) or isinstance(a, str)
        return a

    def _run(
        self,
        op: str,
        args: tuple[Arg, ...],
        kwargs: Mapping[str, Arg],
        pick: Callable[[Val], torch.Tensor | None],
    ) -> torch.Tensor:
        """Run ``op`` on ``pick(v)`` of each value: meta tensors for shapes, or contents."""

        def conv(a: Arg) -> Any:
            if isinstance(a, Val):
                return pick(a)
            if isinstance(a, list | tuple):
                return [conv(x) for x in a]
            return a.torch if isinstance(a, DType) else a

        try:
            with torch.no_grad():
                out = resolve(op)(
                    *(conv(a) for a in args), **{k: conv(v) for k, v in kwargs.items()}
                )
        except (RuntimeError, ValueError, TypeError, IndexError, OverflowError) as exc:
            shapes = [v.shape for v in _walk(list(args)) if isinstance(v, Val)]
            log.info("ONNX node %r as %s on %s: %r", self.onnx_node, op, shapes, exc)
            raise UnsupportedOpsError(
                f"ONNX node {self.onnx_node!r} cannot be expressed as {op} on inputs of shapes "
                f"{shapes} (their shapes, dtypes or attributes do not fit the operator). Check "
                "that the model runs in onnxruntime; if it does, this use of the operator is "
                "not supported yet."
            ) from None
        if not isinstance(out, torch.Tensor):
            raise UnsupportedOpsError(f"{op} returned {type(out).__name__}, not a tensor")
        return out


def _walk(items: list[Any]) -> list[Any]:
    """The leaves of a nested argument list."""
    out: list[Any] = []
    for a in items:
        out.extend(_walk(list(a)) if isinstance(a, list | tuple) else [a])
    return out
