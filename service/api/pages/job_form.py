"""The New job form as data: its fields read into the API's request body, and back.

The form sends text; the API takes JSON. :func:`request_body` writes the form's fields
as the JSON body ``POST /v1/jobs`` would get for the same values -- a field left empty
is left out (the default applies), a number is a JSON number (``5`` an integer,
``0.01`` a float), anything else stays text -- so that validating it with
:class:`service.schemas.JobCreate` refuses exactly what the API refuses, with the same
message. :func:`form_values` is the inverse, from a stored job spec (``?from=<job>``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from search import JobSpec
from service.errors import InvalidRequestError

__all__ = [
    "DEFAULTS",
    "METRIC_TARGETS",
    "SIZE_TARGETS",
    "TARGETS",
    "form_values",
    "request_body",
]

METRIC_TARGETS = ("max_drop", "max_drop_rel", "min_metric", "max_metric")
SIZE_TARGETS = ("max_bytes", "min_ratio")
TARGETS = (*METRIC_TARGETS, *SIZE_TARGETS)
"""The targets the form's ``target`` select offers (and ``none``)."""

DEFAULTS: dict[str, str] = {
    "model_id": "",
    "dataset_id": "",
    "metric": "accuracy",
    "target": "max_drop",
    "target_value": "0.01",
    "size_target": "none",
    "size_target_value": "",
    "trials": "40",
    "space": "",
    "seed": "0",
    "parallelism": "",
    "sampler": "",
    "timeout_s": "",
    "sensitivity": "",
    "holdout": "",
    "rounding": "",
    "activation": "",
    "pins": "",
}
"""Every field of the form and what a blank form shows in it (blank: the spec's default)."""

_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _value(text: str) -> Any:
    """``text`` as JSON would carry it: a number when it is one, else the text itself."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return text
    if re.fullmatch(r"-?[0-9]+", text):
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else text


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _pins(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for item in _names(text):
        pattern, sep, fmt = item.partition("=")
        if not sep or not pattern.strip() or not fmt.strip():
            raise InvalidRequestError(
                f"pin {item[:80]!r} is not pattern=format; write e.g. classifier=int8, "
                "features.*=int4"
            )
        pins[pattern.strip()] = fmt.strip()
    return pins


def _targets(values: Mapping[str, str]) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for select, field in (("target", "target_value"), ("size_target", "size_target_value")):
        name = values.get(select, "none") or "none"
        if name == "none":
            continue
        if name not in TARGETS:
            raise InvalidRequestError(
                f"target {name[:40]!r} is not one of {', '.join(TARGETS)} or none"
            )
        if name in targets:
            raise InvalidRequestError(f"the target {name} is given twice; give it once")
        text = values.get(field, "")
        if not text.strip():
            raise InvalidRequestError(f"give a value for the target {name}, or choose none")
        # a size such as "8KB" is text the spec reads; every other target is a number
        targets[name] = _value(text)
    return targets


def request_body(values: Mapping[str, str]) -> dict[str, Any]:
    """The ``POST /v1/jobs`` body for the form's ``values`` (field name → text).

    Raises:
        InvalidRequestError: a target without a value, one given twice, or a pin that is
            not ``pattern=format`` (what the form adds to the JSON body's own rules).
    """
    body: dict[str, Any] = {"targets": _targets(values)}
    for name in ("model_id", "dataset_id", "seed", "parallelism", "holdout"):
        text = values.get(name, "")
        if text.strip():
            body[name] = _value(text)
    for name in ("metric", "sampler", "sensitivity"):
        text = values.get(name, "").strip()
        if text:
            body[name] = text
    for name in ("space", "rounding", "activation"):
        names = _names(values.get(name, ""))
        if names:
            body[name] = names
    pins = _pins(values.get("pins", ""))
    if pins:
        body["pins"] = pins
    budget = {
        name: _value(values.get(name, ""))
        for name in ("trials", "timeout_s")
        if values.get(name, "").strip()
    }
    if budget:
        body["budget"] = budget
    return body


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def form_values(spec: JobSpec, *, model_id: int, dataset_id: int) -> dict[str, str]:
    """The form's fields filled in with ``spec`` (a job's, to submit it again changed)."""
    doc = spec.to_json()
    targets = doc.get("targets") or {}
    metric_target = next((n for n in METRIC_TARGETS if targets.get(n) is not None), None)
    size_target = next((n for n in SIZE_TARGETS if targets.get(n) is not None), None)
    first, second = metric_target or size_target, size_target if metric_target else None
    budget = doc.get("budget") or {}
    return DEFAULTS | {
        "model_id": str(model_id),
        "dataset_id": str(dataset_id),
        "metric": _text(doc.get("metric")),
        "target": first or "none",
        "target_value": _text(targets.get(first)) if first else "",
        "size_target": second or "none",
        "size_target_value": _text(targets.get(second)) if second else "",
        "trials": _text(budget.get("trials")),
        "timeout_s": _text(budget.get("timeout_s")),
        "space": ", ".join(doc.get("space") or []),
        "seed": _text(doc.get("seed")),
        "parallelism": _text(doc.get("parallelism")),
        "sampler": _text(doc.get("sampler")),
        "sensitivity": _text(doc.get("sensitivity")),
        "holdout": _text(doc.get("holdout")),
        "rounding": ", ".join(doc.get("rounding") or []),
        "activation": ", ".join(doc.get("activation") or []),
        "pins": ", ".join(f"{k}={v}" for k, v in (doc.get("pins") or {}).items()),
    }
