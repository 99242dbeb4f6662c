"""Every plan of a search space scored exactly, with layer outputs shared along a DFS.

A plan gives one :class:`~engine.quant.LayerFormat` per layer; the engine's simulated
model of it (:func:`engine.transforms.apply`) is the folded graph with

- each layer's weight (and, with ``bias_correction``, its bias) replaced by the
  quantized values of that (layer, choice), taken from the evaluator's ``WeightCache``;
- before each layer with quantized inputs, a ``fake_quantize_per_tensor_affine`` node
  whose qparams come from the float model's calibration statistics and the choice's
  activation bits only.

So with the layers ``L_1 .. L_n`` in graph order, the nodes cut into stages
``S_0 = nodes before L_1's input fake-quant``, ``S_k = L_k's fake-quant, L_k, and the
nodes up to L_{k+1}'s fake-quant``. ``S_0`` is the same for every plan; ``S_k`` depends
on choice ``c_k`` alone. The values live after ``S_1 .. S_k`` (those a later node reads)
are a function of ``(c_1, .., c_k)``, so a depth-first walk over the choices computes
``S_k`` once per prefix: ``sum_k prod_{j<=k} |C_j|`` stage runs instead of
``n * prod_j |C_j|`` (the digits CNN with 19 choices per layer: 137,560 instead of
521,284, and the last stage is the cheapest: a fake-quant and a 32 x 10 matmul).
Within a stage, the fake-quant nodes before the layer are shared by the choices that
give them the same qparams.

Every node runs the op the engine's ``GraphModule`` runs (:func:`engine.ir.resolve`),
with the same arguments, on the same evaluation batches (same shapes, same padding), so
the outputs are the engine's bit for bit and the metric is computed from them exactly as
:meth:`search.Evaluator.evaluate` does on the whole split. :func:`check_exact` asserts
that on sample plans.

Bytes need no forward pass: ``payload = other_bytes + sum_k layer_bytes(L_k, c_k)``
(:func:`engine.io.predict_payload_bytes` is that sum).

Size: over 300 lines because the stage layout, the walk over it, the byte-bounded
rounds and the exactness check are one piece: each of the latter reads the layout
(``order``, ``choices``, ``layer_bytes``) the former defines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine.data import METRICS, Batch
from engine.ir import Node, Ref, bind, resolve
from search import Evaluator, SearchSpace

__all__ = ["Oracle", "Stage", "check_exact"]


@dataclass(frozen=True)
class Stage:
    """The nodes of one (layer, choice): ``head`` (its input fake-quant), then ``body``."""

    head: tuple[Node, ...]
    body: tuple[Node, ...]
    tensors: dict[str, torch.Tensor]
    """The tensors the stage's nodes read, as this choice's simulated model holds them."""

    @property
    def head_key(self) -> str:
        return repr([(n.op, n.args, n.kwargs) for n in self.head])


def _refs(v: Any) -> set[str]:
    if isinstance(v, Ref):
        return {v.name}
    if isinstance(v, (list, tuple)):
        return set().union(*(_refs(x) for x in v)) if v else set()
    if isinstance(v, dict):
        return set().union(*(_refs(x) for x in v.values())) if v else set()
    return set()


def _node_refs(nodes: Sequence[Node]) -> set[str]:
    return set().union(*(_refs(n.args) | _refs(n.kwargs) for n in nodes)) if nodes else set()


def _run(nodes: Sequence[Node], env: dict[str, Any]) -> None:
    """Run ``nodes`` in order, writing each output into ``env`` (as the GraphModule does)."""
    for n in nodes:
        args = tuple(bind(a, env) for a in n.args)
        kwargs = {k: bind(v, env) for k, v in n.kwargs.items()}
        env[n.name] = resolve(n.op)(*args, **kwargs)


class Oracle:
    """Scores every plan of ``space`` on ``ev``'s evaluation batches.

    Args:
        ev: the evaluator (its IR, calibration, weight cache and evaluation batches).
        space: the search space (per layer :meth:`SearchSpace.choices`).
    """

    def __init__(self, ev: Evaluator, space: SearchSpace) -> None:
        self.ev, self.space = ev, space
        self.batches: list[Batch] = list(ev.batches)
        ev.prime(space)
        self.choices = [space.choices(x.name, embedding=x.name in ev.embeddings) for x in ev.layers]
        keys = list(dict.fromkeys(k for ks in self.choices for k in ks))
        self.layer_bytes = [
            [ev.layer_bytes(x.name, space.plan({x.name: k}).layers[x.name]) for k in ks]
            for x, ks in zip(ev.layers, self.choices, strict=True)
        ]
        weights = {x.weight for x in ev.layers}
        self.prefix: tuple[Node, ...] = ()
        self.stages: list[list[Stage]] = [[] for _ in ev.layers]
        self.order: list[int] = []
        for key in keys:
            plan = {
                x.name: key if key in ks else ks[0]
                for x, ks in zip(ev.layers, self.choices, strict=True)
            }
            qm = ev.quantize(space.plan(plan))
            nodes = list(qm.ir.nodes)
            index = {n.name: i for i, n in enumerate(nodes)}
            starts = []
            for x in ev.layers:
                fq = f"{x.node}_input_fq"
                starts.append((index.get(fq, index[x.node]), index[x.node]))
            order = sorted(range(len(starts)), key=lambda i: starts[i][0])
            if not self.order:
                self.order, self.prefix = order, tuple(nodes[: starts[order[0]][0]])
                self.base = dict(qm.ir.tensors)
                self.inputs = [s.name for s in qm.ir.inputs]
                self.outputs = list(qm.ir.outputs)
            assert order == self.order and tuple(nodes[: starts[order[0]][0]]) == self.prefix
            for pos, k in enumerate(order):
                if key not in self.choices[k]:
                    continue
                start, at = starts[k]
                end = starts[order[pos + 1]][0] if pos + 1 < len(order) else len(nodes)
                body = tuple(nodes[at:end])
                reads = _node_refs([*nodes[start:at], *body]) & set(qm.ir.tensors)
                others = (weights - {ev.layers[k].weight}) & reads
                assert not others, f"stage of {ev.layers[k].name} reads {others}"
                tensors = {t: qm.ir.tensors[t] for t in reads}
                self.stages[k].append(Stage(tuple(nodes[start:at]), body, tensors))
        assert len(self.outputs) == 1, "one model output expected"
        for k, ks in enumerate(self.choices):
            assert len(self.stages[k]) == len(ks)
        # Values a later stage (or the output) reads, after each depth: only those are kept.
        later: list[set[str]] = []
        needed = {r.name for r in self.outputs}
        for k in reversed(self.order):
            for s in self.stages[k]:
                needed |= _node_refs([*s.head, *s.body])
            later.append(set(needed))
        self.live = list(reversed(later))  # live[d]: read by stages at depth >= d
        info = METRICS[ev.metric]
        if info.needs_labels:
            self.target = torch.cat([b.labels for b in self.batches if b.labels is not None])
        else:
            self.target = torch.cat(ev.reference)
        self.fn: Callable[[torch.Tensor, torch.Tensor], float] = info.fn
        self.n_plans = math.prod(len(ks) for ks in self.choices)

    @property
    def layers(self) -> list[str]:
        return [x.name for x in self.ev.layers]

    def plan_bytes(self) -> np.ndarray:
        """Payload bytes of every plan, indexed like :meth:`scores` (layer-major, int64)."""
        total = np.zeros([len(ks) for ks in self.choices], dtype=np.int64)
        for k, sizes in enumerate(self.layer_bytes):
            shape = [1] * len(self.choices)
            shape[k] = len(sizes)
            total = total + np.asarray(sizes, dtype=np.int64).reshape(shape)
        return (total + self.ev.other_bytes).reshape(-1)

    def plan_of(self, flat: int) -> dict[str, str]:
        """The choices of plan number ``flat`` (``np.unravel_index`` over the layers)."""
        idx = np.unravel_index(flat, [len(ks) for ks in self.choices])
        return {x: ks[int(i)] for x, ks, i in zip(self.layers, self.choices, idx, strict=True)}

    def scores(
        self,
        *,
        out: np.ndarray | None = None,
        keep: Callable[[int, list[int]], bool] | None = None,
    ) -> np.ndarray:
        """The metric of every plan, flat (NaN where ``keep`` cut the subtree off).

        ``out`` (flat, float64, NaN where not yet scored) is filled in place and returned.

        ``keep(depth, picks)`` is asked before a stage runs: ``picks[k]`` is the index
        of layer ``k``'s choice, meaningful for the first ``depth`` layers in graph order
        (``order[:depth]``); False skips that subtree (a byte bound).
        """
        dims = [len(ks) for ks in self.choices]
        flat = np.full(self.n_plans, np.nan) if out is None else out
        grid = flat.reshape(dims)  # a view: writes land in ``flat``
        states = []
        for b in self.batches:
            env: dict[str, Any] = dict(self.base)
            env.update(zip(self.inputs, b.tensors, strict=True))
            with torch.no_grad():
                _run(self.prefix, env)
            states.append({n: v for n, v in env.items() if n in self.live[0] or n in self.inputs})
        picks = [0] * len(dims)

        def walk(depth: int, states: list[dict[str, Any]]) -> None:
            k = self.order[depth]
            heads: dict[str, list[dict[str, Any]]] = {}
            for c, stage in enumerate(self.stages[k]):
                picks[k] = c
                if keep is not None and not keep(depth + 1, picks):
                    continue
                if stage.head_key not in heads:
                    heads[stage.head_key] = [_with(s, stage.tensors, stage.head) for s in states]
                envs = []
                for s in heads[stage.head_key]:
                    env = s | stage.tensors
                    _run(stage.body, env)
                    envs.append(env)
                if depth + 1 < len(self.order):
                    live = self.live[depth + 1]
                    walk(depth + 1, [{n: v for n, v in e.items() if n in live} for e in envs])
                else:
                    name = self.outputs[0].name
                    rows = [b.unpad(e[name]) for b, e in zip(self.batches, envs, strict=True)]
                    grid[tuple(picks)] = self.fn(torch.cat(rows), self.target)

        with torch.no_grad():
            walk(0, states)
        return flat


def _with(
    state: dict[str, Any], tensors: dict[str, torch.Tensor], nodes: Sequence[Node]
) -> dict[str, Any]:
    env = state | tensors
    _run(nodes, env)
    return env


@dataclass(frozen=True)
class Optimum:
    """The smallest plan meeting ``floor``, and what proves it.

    Attributes:
        flat: its plan number (:meth:`Oracle.plan_of`); None if no plan meets the floor.
        bytes: its payload bytes.
        metric: its metric.
        budget: every plan of at most ``budget`` bytes was scored.
        scored: plans scored (all of ``<= budget`` bytes, none above).
        below: plans smaller than the optimum (all scored, all below the floor).
        rounds: scans (each with a larger budget).
    """

    flat: int | None
    bytes: int | None
    metric: float | None
    budget: int
    scored: int
    below: int
    rounds: int


def bounded_keep(
    oracle: Oracle, budget: int, scores: np.ndarray
) -> Callable[[int, list[int]], bool]:
    """``keep`` for :meth:`Oracle.scores`: subtrees whose smallest plan fits ``budget`` bytes,
    leaves not yet scored.

    A prefix (layers ``order[:depth]`` picked) is kept when
    ``other_bytes + sum_{picked} bytes + sum_{rest} min bytes <= budget``: the smallest
    plan under it fits, so every plan of ``<= budget`` bytes is reached.
    """
    order, sizes = oracle.order, oracle.layer_bytes
    rest = [sum(min(sizes[k]) for k in order[d:]) for d in range(len(order) + 1)]
    dims = [len(ks) for ks in oracle.choices]
    grid = scores.reshape(dims)

    def keep(depth: int, picks: list[int]) -> bool:
        used = oracle.ev.other_bytes + sum(sizes[k][picks[k]] for k in order[:depth])
        if used + rest[depth] > budget:
            return False
        return depth < len(order) or bool(np.isnan(grid[tuple(picks)]))

    return keep


def find_optimum(
    oracle: Oracle,
    floor: float,
    *,
    start: int = 1024,
    growth: int = 4,
    scores: np.ndarray | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> tuple[Optimum, np.ndarray]:
    """Score plans in rounds of growing byte budgets until one meets ``floor``.

    Round ``r`` takes the budget ``B_r`` = the bytes of the ``start * growth**r``-th
    smallest plan and scores every plan of ``<= B_r`` bytes not scored yet. Once some
    scored plan meets the floor (``floor - metric <= 0``, the search's constraint), the
    smallest such plan is the optimum: every plan smaller than it is at most ``B_r``
    bytes, so it was scored and missed the floor.

    Returns:
        The optimum and the scores (flat, NaN where not scored).
    """
    nbytes = oracle.plan_bytes()
    ranked = np.sort(nbytes)
    scores = np.full(oracle.n_plans, np.nan) if scores is None else scores
    count, rounds = start, 0
    while True:
        budget = int(ranked[min(count, len(ranked)) - 1])
        oracle.scores(out=scores, keep=bounded_keep(oracle, budget, scores))
        rounds += 1
        scored = np.isfinite(scores)
        meets = scored & (floor - scores <= 0)
        say(
            f"  round {rounds}: budget {budget:,} B, {int(scored.sum()):,} plans scored, "
            f"{int(meets.sum()):,} meet the floor"
        )
        if meets.any() or count >= len(ranked):
            break
        count *= growth
    if not meets.any():
        return Optimum(
            None, None, None, budget, int(scored.sum()), int(scored.sum()), rounds
        ), scores
    best = int(nbytes[meets].min())
    # Of the plans of exactly the optimum's size that meet the floor, the most accurate.
    tied = np.flatnonzero(meets & (nbytes == best))
    flat = int(tied[np.argmax(scores[tied])])
    below = int((nbytes < best).sum())
    assert bool(scored[nbytes < best].all()), "a plan below the optimum was not scored"
    opt = Optimum(flat, best, float(scores[flat]), budget, int(scored.sum()), below, rounds)
    return opt, scores


def score_plans(oracle: Oracle, flats: Sequence[int], scores: np.ndarray) -> None:
    """Score the plans ``flats`` (one walk down each of their prefixes) into ``scores``."""
    dims = [len(ks) for ks in oracle.choices]
    wanted = [tuple(int(i) for i in np.unravel_index(f, dims)) for f in flats]
    prefixes = [
        {tuple(w[k] for k in oracle.order[:d]) for w in wanted} for d in range(len(dims) + 1)
    ]
    grid = scores.reshape(dims)

    def keep(depth: int, picks: list[int]) -> bool:
        if tuple(picks[k] for k in oracle.order[:depth]) not in prefixes[depth]:
            return False
        return depth < len(dims) or bool(np.isnan(grid[tuple(picks)]))

    oracle.scores(out=scores, keep=keep)


def check_exact(
    oracle: Oracle, scores: np.ndarray, flats: Sequence[int]
) -> tuple[list[tuple[int, float, float, int, int]], float]:
    """``(plan, oracle metric, Evaluator.evaluate value, oracle bytes, payload_bytes)`` per
    plan, and the seconds spent in ``Evaluator.evaluate``.

    The caller asserts equality; plans not scored yet are scored by the oracle first.
    """
    score_plans(oracle, flats, scores)
    nbytes = oracle.plan_bytes()
    rows = []
    spent = 0.0
    for flat in flats:
        plan = oracle.space.plan(oracle.plan_of(flat))
        t0 = time.perf_counter()
        engine = oracle.ev.evaluate(plan).value
        spent += time.perf_counter() - t0
        rows.append(
            (
                int(flat),
                float(scores[flat]),
                engine,
                int(nbytes[flat]),
                oracle.ev.payload_bytes(plan),
            )
        )
    return rows, spent
