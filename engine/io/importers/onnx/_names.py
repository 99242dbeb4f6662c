"""Names in an imported ONNX graph: one namespace for inputs, nodes and stored tensors.

Node names are ONNX node names with torch.onnx scopes written as module paths
(``/features/features.0/Conv`` -> ``features.0.Conv``), made unique with ``_1``, ``_2``
suffixes. Stored tensors become (dotted) module attributes when the IR is run, so their names
are held to what ``torch.fx`` can address: each dot-separated part a word of ``[A-Za-z0-9_]``
that no module attribute already uses, and no tensor called like the submodule another
tensor's name creates. Those rules also keep untrusted names out of the Python source that fx
generates.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

import torch
from torch import fx, nn

from engine.ir import CONV_OPS, Node, Ref, Value

__all__ = [
    "GENERATED_PREFIX",
    "Namespace",
    "clean_name",
    "layer_renames",
    "module_path",
    "rename_tensors",
]

GENERATED_PREFIX = "onnx::"
"""torch.onnx's prefix for initializers it made itself (BN-folded or transposed weights)."""
_RESERVED = frozenset(dir(nn.Module())) | frozenset(dir(fx.GraphModule))
_LAYER_OPS = CONV_OPS | {"aten.linear.default"}


def clean_name(name: str) -> str:
    """An ONNX name as an IR name: ``/features/features.0/Conv`` -> ``features.0.Conv``.

    A torch.onnx scope (leading ``/``) becomes its module path plus the last part; other
    names have their slashes turned into dots.
    """
    if name.startswith("/") and (path := module_path(name)):
        return f"{path}.{name.rsplit('/', 1)[-1]}"[:200]
    return name.strip("/").replace("/", ".")[:200]


def _safe_tensor_name(hint: str) -> str:
    parts = [re.sub(r"\W", "_", p, flags=re.ASCII) or "_" for p in clean_name(hint).split(".")]
    return ".".join("t" + p if p in _RESERVED or p.startswith("__") else p for p in parts)


def _above(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:k]) for k in range(1, len(parts))}


class Namespace:
    """The names used so far, and the rules for new node and tensor names."""

    def __init__(self) -> None:
        self._used: set[str] = {"output"}  # "output" is reserved by the IR
        self._tensors: set[str] = set()
        self._prefixes: set[str] = set()  # dotted prefixes of tensor names: fx submodules
        self._held: set[str] = set()  # initializer names, kept for their tensors

    def reserve(self, name: str) -> None:
        """Claim ``name`` as is (a graph input)."""
        self._used.add(name)

    def hold(self, hints: Iterable[str]) -> None:
        """Keep the tensor names of these initializers from being given to nodes."""
        self._held |= {_safe_tensor_name(h) for h in hints}

    def node(self, name: str) -> str:
        """``name``, or ``name_1``, ``name_2``, ..., whichever is free; claimed."""
        out, i = name, 0
        while out in self._used or out in self._held:
            i += 1
            out = f"{name}_{i}"
        self._used.add(out)
        return out

    def tensor(self, hint: str) -> str:
        """A free stored-tensor name as close to ``hint`` as the rules allow; claimed."""
        base = _safe_tensor_name(hint)
        if _above(base) & self._tensors:  # a suffix cannot fix a clash in a parent part
            base = base.replace(".", "_")
        out, i = base, 0
        while not self.tensor_is_free(out):
            i += 1
            out = f"{base}_{i}"
        self.claim_tensor(out)
        return out

    def tensor_is_free(self, name: str) -> bool:
        """Whether a stored tensor may be called ``name`` (already a safe name)."""
        return not (name in self._used or name in self._prefixes or _above(name) & self._tensors)

    def claim_tensor(self, name: str) -> None:
        """Claim ``name`` for a stored tensor."""
        self._used.add(name)
        self._tensors.add(name)
        self._prefixes |= _above(name)


def module_path(scope: str) -> str:
    """The module path in a torch.onnx scope: ``/features/features.0/Conv`` -> ``features.0``.

    Each scope level names a submodule either relative to its parent (``layer.0`` under
    ``encoder``) or by its full path (``features.0`` under ``features``).
    """
    path = ""
    for part in scope.strip("/").split("/")[:-1]:
        path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
    return path


def layer_renames(
    nodes: list[Node],
    generated: set[str],
    scopes: Mapping[str, str],
    names: Namespace,
    outputs: list[Ref],
) -> dict[str, str]:
    """New names for the torch.onnx-generated weights (and biases) of conv/linear layers.

    A weight is renamed to ``<path>.weight`` when only one node reads it and ``<path>`` is
    the layer's module path: its bias's name without ``.bias``, or else the path in its ONNX
    node's scope. A generated bias read only by that node becomes ``<path>.bias``.
    """
    reads = Counter(name for n in nodes for name in n.refs())
    reads.update(r.name for r in outputs)
    out: dict[str, str] = {}
    for n in nodes:
        args = [*n.args, None, None]
        w = args[1].name if isinstance(args[1], Ref) else None
        bias = args[2].name if isinstance(args[2], Ref) else None
        if n.op not in _LAYER_OPS or w not in generated or reads.get(w) != 1:
            continue
        path = ""
        if bias is not None and bias not in generated and bias.endswith(".bias"):
            path = bias.removesuffix(".bias")
        elif scopes.get(n.name, "").startswith("/"):
            path = _safe_tensor_name(module_path(scopes[n.name]))
        pairs = [(w, f"{path}.weight")]
        if bias is not None and bias in generated and reads.get(bias) == 1:
            pairs.append((bias, f"{path}.bias"))
        if path and all(names.tensor_is_free(new) for _, new in pairs):
            for old, new in pairs:
                names.claim_tensor(new)
                out[old] = new
    return out


def rename_tensors(
    nodes: list[Node], tensors: dict[str, torch.Tensor], renames: Mapping[str, str]
) -> tuple[list[Node], dict[str, torch.Tensor]]:
    """``nodes`` and ``tensors`` with stored tensors renamed by ``renames``."""

    def sub(v: Value) -> Value:
        if isinstance(v, Ref):
            return Ref(renames.get(v.name, v.name))
        return [sub(x) for x in v] if isinstance(v, list) else v

    new_nodes = [
        Node(n.name, n.op, tuple(sub(a) for a in n.args), {k: sub(v) for k, v in n.kwargs.items()})
        for n in nodes
    ]
    return new_nodes, {renames.get(k, k): t for k, t in tensors.items()}
