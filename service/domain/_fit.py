"""Checks of a job against the model and dataset it names, made before it is accepted.

What the spec alone cannot know (:class:`~search.JobSpec` checks every value on its own)
is checked here from the rows, cheaply -- the model's inventory, the dataset's inputs --
so that a job a worker could only fail is refused with 422 instead:

- the dataset was validated against this model, or against one whose inputs are exactly
  the same (names, shapes, dtypes): the same arrays then feed this model just as well;
- every layer has a format of the space that fits it (grouped formats need whole groups);
- a size target can be met at all: every quantized weight takes at least the fewest
  code bits its layer's choices allow, so no payload is below
  ``sum(ceil(params * bits / 8))`` (scales, codebooks and float tensors come on top).
  ``max_bytes`` below that bound, or ``min_ratio`` above ``float_bytes / bound``, can
  never be met.
"""

from __future__ import annotations

import math
from typing import Any

from engine.errors import InvalidPlanError
from engine.quant import weight_format
from search import JobSpec
from service.db.models import Dataset, Model
from service.errors import DatasetModelMismatchError

__all__ = ["check_fit", "check_pairing", "smallest_payload"]


def check_pairing(model: Model, dataset: Dataset) -> None:
    """Refuse ``dataset`` for ``model`` unless validated for it or for the same inputs.

    Raises:
        DatasetModelMismatchError: the dataset was validated against a model whose
            inputs differ from ``model``'s.
    """
    if dataset.model_id == model.id:
        return
    wanted = {d["name"]: {"shape": d["shape"], "dtype": d["dtype"]} for d in _inputs(model)}
    if dataset.inputs == wanted:
        return
    raise DatasetModelMismatchError(
        f"dataset {dataset.id} ({dataset.name!r}) was uploaded for model {dataset.model_id}, "
        f"whose inputs differ from those of model {model.id} ({model.name!r} v{model.version}): "
        f"{_shown(dataset.inputs)} against {_shown(wanted)}; upload the data again with "
        f"model_id {model.id}"
    )


def smallest_payload(spec: JobSpec, model: Model) -> int:
    """A lower bound on the payload bytes of any plan of ``spec`` for ``model``.

    Raises:
        InvalidPlanError: a layer has no format of the space that fits it.
    """
    space = spec.search_space()
    total = 0
    for layer in model.inventory.get("layers", []):
        keys = space.choices(layer["name"], inputs=math.prod(layer["weight_shape"][1:]))
        bits = min(weight_format(key.split("/")[0]).bits for key in keys)
        total += math.ceil(int(layer["params"]) * bits / 8)
    return total


def check_fit(spec: JobSpec, model: Model) -> None:
    """Refuse a spec no plan for ``model`` can satisfy (see the module docstring).

    Raises:
        InvalidPlanError: a layer fits no format of the space, or a size target is
            below what any plan can reach.
    """
    floor = smallest_payload(spec, model)
    targets, name = spec.targets, f"model {model.id} ({model.name!r} v{model.version})"
    if floor <= 0:
        return
    if targets.max_bytes is not None and targets.max_bytes < floor:
        raise InvalidPlanError(
            f"`targets.max_bytes` is {targets.max_bytes:,} bytes, but no plan can make {name} "
            f"smaller than {floor:,} bytes (its weights at the fewest bits the space allows, "
            "before scales and the tensors left in float); raise it, or add smaller formats "
            "to `space`"
        )
    float_bytes = int(model.inventory.get("float_bytes", 0))
    if targets.min_ratio is not None and float_bytes / floor < targets.min_ratio:
        raise InvalidPlanError(
            f"`targets.min_ratio` is {targets.min_ratio:g}, but no plan can compress {name} "
            f"more than {float_bytes / floor:.3g}x ({float_bytes:,} float bytes over at least "
            f"{floor:,} bytes of codes); lower it, or add smaller formats to `space`"
        )


def _inputs(model: Model) -> list[dict[str, Any]]:
    return list(model.inventory.get("inputs", []))


def _shown(inputs: Any) -> str:
    text = repr(inputs)
    return text if len(text) <= 200 else text[:197] + "..."
