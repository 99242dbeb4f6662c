"""Pick the batch a model is evaluated at, and check the move on the data.

:func:`evaluation_batch` sizes a batch from the model's peak of live activations;
:func:`fit_batch` moves a model that runs at any batch (:func:`engine.ir.generalize_batch`)
to it and checks, on the first rows of the data, that the outputs did not change.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from engine.data._dataset import Dataset
from engine.ir import IRModel, infer_meta, to_graph_module

__all__ = ["ACTIVATION_BUDGET", "MAX_EVALUATION_BATCH", "evaluation_batch", "fit_batch"]

ACTIVATION_BUDGET = 256 * 2**20
"""Bytes of activations one evaluation batch may hold alive at once."""
MAX_EVALUATION_BATCH = 64


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
