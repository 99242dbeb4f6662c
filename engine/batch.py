"""The batch dimension: find which literals of a static graph carry it, and pick a batch.

Exported graphs are static: a model exported at batch 32 (or 1, or traced with a
dynamic batch and specialised at import) holds literals such as
``view(x, [32, 12, 64, 64])`` and ``expand(m, [32, 1, 64, 64])``. To run it at
another batch ``n`` those literals must become ``n``-multiples while every
other integer stays. :func:`generalize_batch` finds them by running the graph
once on *symbolic* shapes (fake tensors whose dimension 0 is a symbol ``N``,
under torch's own shape propagation) and rewriting, as it goes, the size
arguments of the ops that take sizes:

- ``view`` / ``reshape`` of ``x`` with ``x.shape[p] = m·N``: the target dim ``q``
  whose prefix product equals that of ``x`` before ``p`` (the batch keeps its
  place), else the last dim whose prefix divides it (the batch merged with the
  dims before it); its literal ``t_q`` (a multiple of the stored batch ``B``)
  becomes ``(t_q / B)·N``; a ``-1`` there is left alone;
- ``expand``: a size over a symbolic dim becomes ``-1``; a new or broadcast
  leading dim equal to ``k·B`` (``B > 1``) becomes ``k·N``;
- ``slice`` over a symbolic dim to its end: the end becomes ``2^63 - 1``;
- factories (``zeros``, ``ones``, ``full``, ``new_*``) whose first size is
  ``k·B`` (``B > 1``) become ``k·N``.

Every other op is propagated by torch's shape functions. The trace uses a
hint for ``N`` (:data:`_HINT`) different from ``B``, so a literal left at ``B``
that meets a batch-sized tensor fails loudly (a shape mismatch) instead of
silently specialising ``N``; any failure, any op that selects or slices within
the batch, and any specialisation of ``N`` leaves the model with a fixed batch.
The rewritten graph is identical to the original at batch ``B``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from engine.data import Dataset
from engine.fx import bind, infer_meta, to_graph_module
from engine.ir import BatchDim, BatchSite, DType, IRModel, Node, Ref, Value
from engine.ops import resolve

__all__ = ["DYNAMIC_BATCH", "evaluation_batch", "fit_batch", "generalize_batch"]

DYNAMIC_BATCH = 32
"""The batch importers give a model whose batch is dynamic (a symbol, ``dim_param``),
before :func:`generalize_batch` makes it any batch again."""

_HINT = 11
"""The trace's value for ``N``: not 0/1 (torch specialises those), rarely a model dim."""

_INT64_MAX = 2**63 - 1
_RESHAPES = {"aten.view.default", "aten.reshape.default", "aten._unsafe_view.default"}
_FACTORIES = {"aten.zeros.default", "aten.ones.default", "aten.full.default"}
_NEW_FACTORIES = {"aten.new_ones.default", "aten.new_zeros.default", "aten.new_full.default"}
_BATCH_LOCAL = {"aten.select.int", "aten.split.Tensor", "aten.split_with_sizes.default"}
"""Ops that would pick samples out of the batch when applied along it."""

ACTIVATION_BUDGET = 256 * 2**20
"""Bytes of activations one evaluation batch may hold alive at once."""
MAX_EVALUATION_BATCH = 64


class _NotGeneric(Exception):
    """The graph cannot be run at another batch (the message says why)."""


def generalize_batch(model: IRModel) -> IRModel:
    """``model`` with :attr:`IRModel.batch` set when it can run at any batch.

    Inputs whose dimension 0 equals the first input's are the batched ones. A
    model that already has ``batch``, has no input dimensions, or fails the
    symbolic trace (see the module docstring) is returned unchanged.
    """
    if model.batch is not None or not model.inputs or not model.inputs[0].shape:
        return model
    size = model.inputs[0].shape[0]
    batched = tuple(s.name for s in model.inputs if s.shape and s.shape[0] == size)
    try:
        nodes, sites, outputs = _trace(model, size, set(batched))
    except _NotGeneric:
        return model
    if len(outputs) != len(model.output_specs):
        outputs = []
    return replace(model, nodes=nodes, batch=BatchDim(size, batched, tuple(sites), tuple(outputs)))


def evaluation_batch(model: IRModel, samples: int | None = None) -> int:
    """A batch for evaluating ``model``: as large as memory allows, up to 64.

    A fixed-batch model gets its own batch. Otherwise the largest ``n <=
    MAX_EVALUATION_BATCH`` (and ``<= samples`` when given) whose peak of live
    activations -- node outputs alive at once when each is freed after its last
    reader, from a meta-device pass at one sample, times ``n`` -- stays within
    :data:`ACTIVATION_BUDGET`.
    """
    if model.batch is None:
        return model.batch_size or 1
    one = model.at_batch(1)
    sizes = {
        name: math.prod(shape) * (torch.finfo(dt).bits if dt.is_floating_point else 64) // 8
        for name, (shape, dt) in infer_meta(one).items()
    }
    last_use: dict[str, int] = {}
    for i, node in enumerate(one.nodes):
        for name in node.refs():
            last_use[name] = i
    live = peak = 0
    for i, node in enumerate(one.nodes):
        live += sizes.get(node.name, 0)
        peak = max(peak, live)
        live -= sum(sizes.get(r, 0) for r in set(node.refs()) if last_use.get(r) == i)
    n = max(1, min(MAX_EVALUATION_BATCH, ACTIVATION_BUDGET // max(1, peak)))
    return max(1, min(n, samples)) if samples else n


def fit_batch(model: IRModel, data: Dataset) -> tuple[IRModel, Dataset]:
    """``model`` at its :func:`evaluation_batch` for ``data``, and ``data`` batched to match.

    The move is checked on the data itself: the first evaluation batch must give, row
    for row, what the graph gives at its stored batch (to float rounding). Where it
    does not -- a graph whose literals the trace placed wrongly -- the model keeps its
    stored batch and a note says so. A fixed-batch model is returned as is (``data``
    pads its last batch to it).
    """
    samples = max(data.calibration.num_samples, data.evaluation.num_samples)
    moved = model.at_batch(evaluation_batch(model, samples))
    if moved is not model and not _same_rows(model, moved, data):
        note = (
            f"the model did not compute the same outputs at batch {moved.batch_size} as at "
            f"its exported batch {model.batch_size}; evaluated in batches of "
            f"{model.batch_size}"
        )
        fixed = replace(model, batch=None)
        return fixed, replace(data, inputs=fixed.inputs, notes=(*data.notes, note))
    return moved, replace(data, inputs=moved.inputs)


def _same_rows(stored: IRModel, moved: IRModel, data: Dataset) -> bool:
    """Whether the first evaluation rows give the same outputs at both batches."""
    size, n = stored.batch_size or 1, moved.batch_size or 1
    a = next(replace(data, inputs=stored.inputs).batches("evaluation", size))
    b = next(replace(data, inputs=moved.inputs).batches("evaluation", n))
    rows = min(a.n_valid, b.n_valid)
    with torch.no_grad():
        out_a = to_graph_module(stored)(*a.tensors)
        out_b = to_graph_module(moved)(*b.tensors)
    pairs = zip(_tensors(out_a), _tensors(out_b), strict=True)
    return all(_close(x[:rows], y[:rows]) for x, y in pairs)


def _tensors(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple | list) else [out]


def _close(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Equal up to float rounding of a different batch: ``max|x - y| <= 1e-4·max|y| + 1e-6``."""
    if x.shape != y.shape:
        return False
    if not x.is_floating_point():
        return bool(torch.equal(x, y))
    x, y = x.double(), y.double()
    if not bool(torch.isfinite(x).eq(torch.isfinite(y)).all()):
        return False
    fin = torch.isfinite(y)
    scale = float(y[fin].abs().max()) if bool(fin.any()) else 0.0
    diff = (x[fin] - y[fin]).abs()
    return (float(diff.max()) if diff.numel() else 0.0) <= 1e-4 * scale + 1e-6


def _trace(
    model: IRModel, size: int, batched: set[str]
) -> tuple[tuple[Node, ...], list[BatchSite], list[int]]:
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

    env = ShapeEnv()
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=False)
    source = ConstantSource("mpq_batch")
    sym = env.create_symbol(_HINT, source=source, dynamic_dim=DimDynamic.DYNAMIC)
    n_sym: Any = env.create_symintnode(sym, hint=_HINT, source=source)
    tracer = _Tracer(size, sym, n_sym)
    values: dict[str, Any] = {}
    try:
        with mode, torch.no_grad():
            for spec in model.inputs:
                shape: list[Any] = list(spec.shape)
                if spec.name in batched:
                    shape[0] = n_sym
                values[spec.name] = torch.empty(shape, dtype=DType(spec.dtype).torch)
            for name, t in model.tensors.items():
                values[name] = mode.from_tensor(t)
            nodes = tuple(tracer.run(n, values) for n in model.nodes)
    except _NotGeneric:
        raise
    except Exception as exc:  # any op that cannot run at a symbolic batch
        raise _NotGeneric(f"{type(exc).__name__}: {exc}") from None
    if sym in env.replacements:
        raise _NotGeneric("the batch was specialised by the trace")
    outputs: list[int] = []
    for ref in model.outputs:
        out = values[ref.name]
        dim0 = out.shape[0] if isinstance(out, torch.Tensor) and out.dim() else None
        outputs.append(tracer.coeff(dim0) or 0)
    return nodes, tracer.sites, outputs


class _Tracer:
    """Runs IR nodes on symbolic fake tensors, rewriting batch literals (module docstring)."""

    def __init__(self, size: int, sym: Any, n_sym: Any) -> None:
        self.size, self.sym, self.n_sym = size, sym, n_sym
        self.sites: list[BatchSite] = []

    def coeff(self, d: Any) -> int | None:
        """``m`` when ``d`` is ``m·N`` (an int multiple of the batch symbol), else None."""
        if not isinstance(d, torch.SymInt):
            return None
        expr = d.node.expr
        if self.sym not in expr.free_symbols:
            return None
        m = expr / self.sym
        if not m.is_Integer or int(m) < 1:
            raise _NotGeneric(f"a dimension {expr} is not a multiple of the batch")
        return int(m)

    def run(self, node: Node, values: dict[str, Any]) -> Node:
        """Rewrite ``node``'s batch literals, run it symbolically, return the IR node."""
        first = len(self.sites)
        node = self._rewrite(node, values)
        traced = node
        for site in self.sites[first:]:
            traced = traced.with_arg(site.path, site.coeff * self.n_sym)
        args = tuple(bind(a, values) for a in traced.args)
        kwargs = {k: bind(v, values) for k, v in traced.kwargs.items()}
        values[node.name] = resolve(node.op)(*args, **kwargs)
        return node

    def _rewrite(self, node: Node, values: dict[str, Any]) -> Node:
        op, args = node.op, node.args
        x = values.get(args[0].name) if args and isinstance(args[0], Ref) else None
        shape = list(x.shape) if isinstance(x, torch.Tensor) else []
        batch_dims = [i for i, d in enumerate(shape) if self.coeff(d)]
        if op in _BATCH_LOCAL and batch_dims:
            dim = _int_arg(node, 1 if op == "aten.select.int" else 2, "dim", 0)
            if dim % len(shape) in batch_dims:
                raise _NotGeneric(f"{node.name} ({op}) picks samples out of the batch")
        if op in _RESHAPES and batch_dims and isinstance(args[1], list):
            return node.with_arg((1,), self._reshape(node, shape, batch_dims, args[1]))
        if op == "aten.expand.default" and isinstance(args[1], list):
            return node.with_arg((1,), self._expand(node, shape, args[1]))
        if op == "aten.slice.Tensor" and batch_dims:
            return self._slice(node, shape, batch_dims)
        if op in _FACTORIES and args and isinstance(args[0], list):
            self._leading(node, (0, 0), args[0])
        elif op in _NEW_FACTORIES and len(args) > 1 and isinstance(args[1], list):
            self._leading(node, (1, 0), args[1])
        return node

    def _reshape(
        self, node: Node, shape: list[Any], batch_dims: list[int], target: list[Value]
    ) -> list[Value]:
        if len(batch_dims) != 1 or not all(isinstance(t, int) for t in target):
            raise _NotGeneric(f"{node.name}: cannot place the batch in {target}")
        p = batch_dims[0]
        m_in = self.coeff(shape[p]) or 0
        prefix = math.prod(int(d) for d in shape[:p])
        numel = prefix * m_in * self.size * math.prod(int(d) for d in shape[p + 1 :])
        ints = [t for t in target if isinstance(t, int)]
        known = math.prod(t for t in ints if t != -1)
        resolved = [numel // known if t == -1 else t for t in ints] if known else ints
        q = _batch_position(resolved, prefix, self.size)
        if q is None:
            raise _NotGeneric(f"{node.name}: cannot place the batch in {target}")
        if ints[q] != -1:
            self.sites.append(BatchSite(node.name, (1, q), resolved[q] // self.size))
        return list(target)

    def _expand(self, node: Node, shape: list[Any], sizes: list[Value]) -> list[Value]:
        out = list(sizes)
        lead = len(sizes) - len(shape)
        for i, s in enumerate(sizes):
            d = shape[i - lead] if i >= lead else None
            if d is not None and self.coeff(d):
                out[i] = -1
            elif (
                i == 0
                and isinstance(s, int)
                and self.size > 1
                and s % self.size == 0
                and (d is None or d == 1)
            ):
                self.sites.append(BatchSite(node.name, (1, 0), s // self.size))
        return out

    def _slice(self, node: Node, shape: list[Any], batch_dims: list[int]) -> Node:
        dim = _int_arg(node, 1, "dim", 0) % len(shape)
        if dim not in batch_dims:
            return node
        start = node.args[2] if len(node.args) > 2 else node.kwargs.get("start", 0)
        in_kwargs = len(node.args) <= 3
        end = node.kwargs.get("end") if in_kwargs else node.args[3]
        step = node.args[4] if len(node.args) > 4 else node.kwargs.get("step", 1)
        stored = (self.coeff(shape[dim]) or 0) * self.size
        whole = end is None or (isinstance(end, int) and end >= stored)
        if start not in (0, None) or step not in (1, None) or not whole:
            raise _NotGeneric(f"{node.name} slices within the batch")
        if end is None or end == _INT64_MAX:
            return node
        return node.with_arg(("end",) if in_kwargs else (3,), _INT64_MAX)

    def _leading(self, node: Node, path: tuple[int, ...], sizes: list[Value]) -> None:
        first = sizes[0] if sizes else None
        if isinstance(first, int) and self.size > 1 and first > 0 and first % self.size == 0:
            self.sites.append(BatchSite(node.name, path, first // self.size))


def _batch_position(target: Sequence[int], prefix: int, size: int) -> int | None:
    """The target dim that carries the batch (module docstring), or None."""
    products = [math.prod(target[:j]) for j in range(len(target))]
    for j, t in enumerate(target):
        if products[j] == prefix and t % size == 0 and t > 0:
            return j
    merged = [
        j
        for j, t in enumerate(target)
        if products[j] and prefix % products[j] == 0 and t % (size * (prefix // products[j])) == 0
    ]
    return merged[-1] if merged else None


def _int_arg(node: Node, index: int, name: str, default: int) -> int:
    v = node.args[index] if len(node.args) > index else node.kwargs.get(name, default)
    return v if isinstance(v, int) else default
