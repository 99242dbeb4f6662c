"""The IR model: a validated, data-only graph plus its tensors.

An :class:`IRModel` is everything MPQ keeps of an uploaded model: named input
specs, a topologically ordered list of :class:`~engine.ir.Node` s whose ops come from
the allow-list in :mod:`engine.ir._ops`, the output references, and the tensors
(parameters, buffers, constants). Values share one namespace: inputs, tensors and
node outputs have distinct names, and a node may only reference names defined
before it. :meth:`IRModel.graph_json` / :meth:`IRModel.from_json` are the graph's JSON
form (the file format is in :mod:`engine.ir._files`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from engine.errors import InvalidIRError, UnsupportedOpsError
from engine.ir._ops import ALLOWED_OPS
from engine.ir._values import (
    TORCH_DTYPES,
    BatchDim,
    BatchSite,
    Node,
    Ref,
    TensorSpec,
    decode_value,
    encode_value,
)

__all__ = ["IR_VERSION", "IRModel"]

IR_VERSION = 1


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
                    "args": [encode_value(a) for a in n.args],
                    "kwargs": {k: encode_value(v) for k, v in n.kwargs.items()},
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
                        args=tuple(decode_value(a) for a in n["args"]),
                        kwargs={_str(k): decode_value(v) for k, v in n["kwargs"].items()},
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
        if not isinstance(t, torch.Tensor) or t.dtype not in TORCH_DTYPES.values():
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
