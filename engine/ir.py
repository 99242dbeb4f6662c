"""MPQ's data-only model IR.

An :class:`IRModel` is everything MPQ keeps of an uploaded model: named input
specs, a topologically ordered list of :class:`Node` s whose ops come from the
allow-list in :mod:`engine.ops`, the output references, and the tensors
(parameters, buffers, constants). Node arguments are plain data -- ``None``,
``bool``, ``int``, ``float``, ``str``, :class:`Ref` (a value by name),
:class:`DType`, :class:`Device`, :class:`Layout`, :class:`MemoryFormat` and
lists of these. Nothing in an IR can name a Python callable or carry code.

On disk an IR is one safetensors file: the tensors, plus the graph as JSON in
the header metadata under ``"mpq_ir"`` (:func:`save_ir`, :func:`load_ir`).
Values share one namespace: inputs, tensors and node outputs have distinct names,
and a node may only reference names defined before it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias

import torch

from engine._safetensors import read_safetensors, write_safetensors
from engine.errors import CorruptFileError, InvalidIRError, UnsupportedOpsError
from engine.ops import ALLOWED_OPS

__all__ = [
    "IR_VERSION",
    "BatchDim",
    "BatchSite",
    "DType",
    "Device",
    "IRModel",
    "Layout",
    "MemoryFormat",
    "Node",
    "Ref",
    "TensorSpec",
    "Value",
    "is_ir_file",
    "load_ir",
    "save_ir",
]

IR_VERSION = 1

_DTYPES = {
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
        if self.name not in _DTYPES:
            raise InvalidIRError(f"unknown dtype {self.name!r}; known: {sorted(_DTYPES)}")

    @property
    def torch(self) -> torch.dtype:
        return _DTYPES[self.name]


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


@dataclass(frozen=True)
class IRModel:
    """A validated, data-only model graph plus its tensors.

    Construction validates: unique names, ops on the allow-list, references to
    names defined earlier, outputs that exist, tensor dtypes MPQ knows.
    """

    inputs: tuple[TensorSpec, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Ref, ...]
    tensors: Mapping[str, torch.Tensor]
    output_specs: tuple[TensorSpec, ...] = ()
    version: int = IR_VERSION
    batch: BatchDim | None = None
    """Set when the graph runs at any batch size (:meth:`at_batch`); None: a fixed batch."""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def batch_size(self) -> int | None:
        """The batch the graph is stored at: ``batch.size``, else dim 0 of the first input.

        None for a model whose first input has no dimensions.
        """
        if self.batch is not None:
            return self.batch.size
        first = self.inputs[0].shape if self.inputs else ()
        return first[0] if first else None

    def at_batch(self, n: int) -> IRModel:
        """The same model as a static graph at batch ``n`` (itself when ``n`` is its batch).

        Raises:
            ValueError: ``n < 1``, or the model has a fixed batch other than ``n``.
            InvalidIRError: a batch site no longer holds ``coeff * size`` (a pass broke it).
        """
        if n < 1:
            raise ValueError(f"batch size must be >= 1, got {n}")
        if self.batch is None or n == self.batch.size:
            if n != self.batch_size:
                raise ValueError(f"the model has a fixed batch of {self.batch_size}, not {n}")
            return self
        b = self.batch
        by_node: dict[str, list[BatchSite]] = {}
        for site in b.sites:
            by_node.setdefault(site.node, []).append(site)
        nodes = []
        for node in self.nodes:
            for site in by_node.get(node.name, ()):
                node = _set_site(node, site, b.size, n)
            nodes.append(node)
        inputs = tuple(
            replace(s, shape=(n, *s.shape[1:])) if s.name in b.inputs else s for s in self.inputs
        )
        coeffs = b.outputs or (0,) * len(self.output_specs)
        outputs = tuple(
            replace(s, shape=(c * n, *s.shape[1:])) if c and s.shape else s
            for s, c in zip(self.output_specs, coeffs, strict=True)
        )
        return replace(
            self,
            inputs=inputs,
            nodes=tuple(nodes),
            output_specs=outputs,
            batch=replace(b, size=n),
        )

    def node(self, name: str) -> Node:
        """The node called ``name``; raises KeyError if there is none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def users(self) -> dict[str, list[str]]:
        """Map each value name to the names of the nodes (or ``"output"``) reading it."""
        out: dict[str, list[str]] = {}
        for n in self.nodes:
            for name in n.refs():
                out.setdefault(name, []).append(n.name)
        for r in self.outputs:
            out.setdefault(r.name, []).append("output")
        return out

    def without_unused_tensors(self) -> IRModel:
        """A copy without the tensors no node reads (e.g. BN's ``num_batches_tracked``)."""
        live = self.users()
        return replace(self, tensors={k: v for k, v in self.tensors.items() if k in live})

    def graph_json(self) -> dict[str, Any]:
        """The graph without tensor data, as a JSON-ready dict."""
        out: dict[str, Any] = {
            "version": self.version,
            "inputs": [_spec_json(s) for s in self.inputs],
            "outputs": [r.name for r in self.outputs],
            "output_specs": [_spec_json(s) for s in self.output_specs],
            "nodes": [
                {
                    "name": n.name,
                    "op": n.op,
                    "args": [_encode(a) for a in n.args],
                    "kwargs": {k: _encode(v) for k, v in n.kwargs.items()},
                }
                for n in self.nodes
            ],
        }
        if self.batch is not None:
            out["batch"] = _batch_json(self.batch)
        return out

    @classmethod
    def from_json(cls, graph: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> IRModel:
        """Inverse of :meth:`graph_json`; validates everything."""
        try:
            if graph["version"] != IR_VERSION:
                raise InvalidIRError(
                    f"IR version {graph['version']!r}; this MPQ reads version {IR_VERSION}"
                )
            return cls(
                inputs=tuple(_spec(s) for s in graph["inputs"]),
                nodes=tuple(
                    Node(
                        name=_str(n["name"]),
                        op=_str(n["op"]),
                        args=tuple(_decode(a) for a in n["args"]),
                        kwargs={_str(k): _decode(v) for k, v in n["kwargs"].items()},
                    )
                    for n in graph["nodes"]
                ),
                outputs=tuple(Ref(_str(r)) for r in graph["outputs"]),
                tensors=dict(tensors),
                output_specs=tuple(_spec(s) for s in graph.get("output_specs", [])),
                batch=_batch(graph["batch"]) if graph.get("batch") is not None else None,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InvalidIRError(f"malformed IR graph JSON ({type(exc).__name__}: {exc})") from None


def save_ir(model: IRModel, path: Path) -> int:
    """Write ``model`` as one safetensors file; return its size in bytes."""
    meta = {"format": "mpq-ir", "mpq_ir": json.dumps(model.graph_json(), separators=(",", ":"))}
    return write_safetensors(Path(path), model.tensors, metadata=meta)


def is_ir_file(path: Path) -> bool:
    """Whether ``path`` is an IR file of :func:`save_ir` (reads only its header).

    A safetensors file starts with an 8-byte little-endian header length, then that
    many bytes of JSON whose ``__metadata__.format`` :func:`save_ir` sets to ``mpq-ir``.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        size = int.from_bytes(head, "little")
        if not 2 <= size <= 100_000_000:
            return False
        try:
            header = json.loads(f.read(size))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return isinstance(meta, dict) and meta.get("format") == "mpq-ir"


def load_ir(path: Path) -> IRModel:
    """Read and validate an IR file written by :func:`save_ir`.

    Raises:
        CorruptFileError: not a readable safetensors file or no IR in its header.
        InvalidIRError / UnsupportedOpsError: the graph breaks the IR's rules.
    """
    tensors, meta = read_safetensors(Path(path))
    if meta.get("format") != "mpq-ir" or "mpq_ir" not in meta:
        raise CorruptFileError(f"{Path(path).name!r} is a safetensors file without an MPQ IR")
    try:
        graph = json.loads(meta["mpq_ir"])
    except json.JSONDecodeError as exc:
        raise CorruptFileError(f"the IR graph in {Path(path).name!r} is not JSON: {exc}") from None
    if not isinstance(graph, dict):
        raise InvalidIRError("the IR graph must be a JSON object")
    return IRModel.from_json(graph, tensors)


def _validate(m: IRModel) -> None:
    if m.version != IR_VERSION:
        raise InvalidIRError(f"IR version {m.version}; this MPQ reads version {IR_VERSION}")
    bad_ops = sorted({n.op for n in m.nodes if n.op not in ALLOWED_OPS})
    if bad_ops:
        raise UnsupportedOpsError(
            f"the model uses {len(bad_ops)} operator(s) MPQ does not support: "
            f"{', '.join(bad_ops)}. Supported operators are listed by `mpq ops`; "
            "re-export the model without them or open an issue asking for them."
        )
    defined: set[str] = set()
    for name, t in m.tensors.items():
        _check_name(name, defined, "tensor")
        if not isinstance(t, torch.Tensor) or t.dtype not in _DTYPES.values():
            raise InvalidIRError(f"tensor {name!r} must be a tensor of a known dtype")
    for spec in m.inputs:
        _check_name(spec.name, defined, "input")
    for n in m.nodes:
        for name in n.refs():
            if name not in defined:
                raise InvalidIRError(f"node {n.name!r} reads {name!r}, not defined before it")
        _check_name(n.name, defined, "node")
    for r in m.outputs:
        if r.name not in defined:
            raise InvalidIRError(f"output {r.name!r} is not defined in the graph")
    if not m.outputs:
        raise InvalidIRError("the graph has no outputs")
    if m.batch is not None:
        names = {s.name: s for s in m.inputs}
        for name in m.batch.inputs:
            if name not in names or not names[name].shape:
                raise InvalidIRError(f"batch input {name!r} is not an input with a dimension")
            if names[name].shape[0] != m.batch.size:
                raise InvalidIRError(
                    f"batch input {name!r} has dimension 0 of {names[name].shape[0]}, not the "
                    f"batch size {m.batch.size}"
                )
        if m.batch.outputs and len(m.batch.outputs) != len(m.output_specs):
            raise InvalidIRError("batch outputs do not match the output specs")


def _set_site(node: Node, site: BatchSite, old: int, new: int) -> Node:
    """``node`` with the integer at ``site.path`` moved from ``coeff * old`` to ``coeff * new``."""
    try:
        v = node.arg_at(site.path)
    except (IndexError, KeyError, TypeError):
        raise InvalidIRError(f"batch site {site!r} does not match node {node.name!r}") from None
    if isinstance(v, bool) or not isinstance(v, int) or v != site.coeff * old:
        raise InvalidIRError(f"batch site {site!r} holds {v!r}, not {site.coeff} x {old}")
    return node.with_arg(site.path, site.coeff * new)


_NAME = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
"""Names are dotted identifiers (``features.0.weight``): they end up in generated code."""


def _check_name(name: str, defined: set[str], kind: str) -> None:
    if not isinstance(name, str) or len(name) > 512 or not _NAME.fullmatch(name):
        raise InvalidIRError(
            f"{kind} name {str(name)[:80]!r} must be 1-512 letters, digits, underscores and "
            "dots (like features.0.weight)"
        )
    if name in defined or name == "output":
        raise InvalidIRError(f"{kind} name {name!r} is used twice (or is reserved)")
    defined.add(name)


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


def _encode(v: Value) -> Any:
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return {"float": repr(v)}
    for tag, cls in _TAGGED.items():
        if isinstance(v, cls):
            return {tag: v.name}
    return v


def _decode(v: Any) -> Value:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, dict) and len(v) == 1:
        ((tag, name),) = v.items()
        if tag == "float" and name in ("inf", "-inf", "nan"):
            return float(name)
        if tag in _TAGGED and isinstance(name, str):
            return _TAGGED[tag](name)
    raise InvalidIRError(f"argument {str(v)[:80]!r} is not an IR value")


def _spec_json(s: TensorSpec) -> dict[str, Any]:
    return {"name": s.name, "shape": list(s.shape), "dtype": s.dtype}


def _batch_json(b: BatchDim) -> dict[str, Any]:
    return {
        "size": b.size,
        "inputs": list(b.inputs),
        "sites": [{"node": s.node, "path": list(s.path), "coeff": s.coeff} for s in b.sites],
        "outputs": list(b.outputs),
    }


def _batch(d: Any) -> BatchDim:
    return BatchDim(
        size=d["size"],
        inputs=tuple(_str(x) for x in d["inputs"]),
        sites=tuple(
            BatchSite(_str(s["node"]), tuple(s["path"]), s["coeff"]) for s in d.get("sites", [])
        ),
        outputs=tuple(d.get("outputs", [])),
    )


def _spec(d: Any) -> TensorSpec:
    return TensorSpec(name=_str(d["name"]), shape=tuple(d["shape"]), dtype=_str(d["dtype"]))


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise InvalidIRError(f"expected a string in the IR, got {type(v).__name__}")
    return v
