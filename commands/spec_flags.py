"""The flags of ``mpq search``: one table mapping each :class:`~search.JobSpec` option to a flag.

Each row names a spec option (:meth:`JobSpec.option_names`), its flag (the option's name
with dashes, ``--pin`` for ``pins``), where its value goes in the spec's JSON
(:meth:`JobSpec.to_json`) and how the flag's text is read. :func:`spec_from_args` puts
the flags given into such a document and reads it with :meth:`JobSpec.from_json`, so the
command line and ``POST /v1/jobs`` share defaults, validation and error messages
(:class:`~engine.errors.InvalidPlanError`, ``invalid_plan``). A flag left out leaves its
option out of the document, so its default is the spec's.

The spec's messages name options as the API does, in backticks (```targets.max_drop```);
:func:`spec_from_args` says them in this command's words instead (``--max-drop``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidPlanError
from search import METRICS, SAMPLERS, JobSpec

__all__ = [
    "SPEC_FLAGS",
    "SpecFlag",
    "add_spec_flags",
    "in_flag_words",
    "spec_document",
    "spec_from_args",
]


def _names(text: str) -> list[str]:
    """``"int4, int8,"`` -> ``["int4", "int8"]``: a comma-separated list, blanks dropped."""
    return [t.strip() for t in text.split(",") if t.strip()]


def _pins(texts: list[str]) -> dict[str, str]:
    """``["classifier=int8"]`` -> ``{"classifier": "int8"}`` (a pattern ends at the first ``=``).

    Raises:
        InvalidPlanError: a pin without ``=``.
    """
    pins: dict[str, str] = {}
    for text in texts:
        pattern, sep, fmt = text.partition("=")
        if not sep:
            raise InvalidPlanError(
                f"pin {text!r} must look like PATTERN=FORMAT/ROUNDING/ACTIVATION"
            )
        pins[pattern] = fmt
    return pins


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class SpecFlag:
    """One row of the table: a spec option and the flag that sets it.

    Attributes:
        option: the option's name in :meth:`JobSpec.option_names`.
        flag: the command-line flag (``--max-drop``).
        path: keys of the option's value in :meth:`JobSpec.to_json` (``("targets",
            "max_drop")``).
        read: argparse's ``type``: the flag's text to a number (argparse reports a
            value that is not one), or ``str`` (a ``max_bytes`` size string is read by
            the spec itself).
        help: what the flag sets (the default is appended from :class:`JobSpec`).
        to_json: the value (or, with ``repeat``, the list of values) read to its JSON
            form; may raise :class:`~engine.errors.InvalidPlanError`.
        aliases: older spellings still accepted (``--timeout``, ``--workers``).
        metavar: the value's name in ``--help`` (default: the option's, in capitals).
        repeat: the flag may be given several times; its values are collected.
    """

    option: str
    flag: str
    path: tuple[str, ...]
    read: Callable[[str], Any]
    help: str
    to_json: Callable[[Any], Any] = _same
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    repeat: bool = False

    @property
    def dest(self) -> str:
        """The attribute of the parsed arguments holding this flag's values."""
        return f"spec_{self.option}"


SPEC_FLAGS: tuple[SpecFlag, ...] = (
    SpecFlag("metric", "--metric", ("metric",), str, f"metric: {', '.join(METRICS)}"),
    SpecFlag(
        "max_drop", "--max-drop", ("targets", "max_drop"), float, "largest metric drop allowed"
    ),
    SpecFlag(
        "max_drop_rel",
        "--max-drop-rel",
        ("targets", "max_drop_rel"),
        float,
        "largest relative metric drop (a fraction)",
    ),
    SpecFlag(
        "min_metric",
        "--min-metric",
        ("targets", "min_metric"),
        float,
        "lowest metric allowed (e.g. cosine 0.99, sqnr in dB)",
    ),
    SpecFlag(
        "max_metric",
        "--max-metric",
        ("targets", "max_metric"),
        float,
        "highest metric allowed, for kl and nmse (lower is better; e.g. kl 0.01)",
    ),
    SpecFlag(
        "max_bytes",
        "--max-bytes",
        ("targets", "max_bytes"),
        str,
        "largest payload, e.g. 8KB, 11.4MB (KB = 1000 B)",
    ),
    SpecFlag(
        "min_ratio",
        "--min-ratio",
        ("targets", "min_ratio"),
        float,
        "smallest compression vs the float model",
    ),
    SpecFlag(
        "space",
        "--space",
        ("space",),
        str,
        "weight formats, e.g. int2,int3,int4,int6,int8,cb16",
        to_json=_names,
        metavar="F1,F2,...",
    ),
    SpecFlag(
        "rounding",
        "--rounding",
        ("rounding",),
        str,
        "roundings to search: nearest, gptq",
        to_json=_names,
        metavar="R1,R2",
    ),
    SpecFlag(
        "activation",
        "--activation",
        ("activation",),
        str,
        "activation formats to search, e.g. a4,a8,a16,float",
        to_json=_names,
        metavar="A1,A2,...",
    ),
    SpecFlag(
        "pins",
        "--pin",
        ("pins",),
        str,
        "pin layers matching PATTERN to a format, e.g. classifier=int8 (repeatable)",
        to_json=_pins,
        metavar="PATTERN=FORMAT",
        repeat=True,
    ),
    SpecFlag("trials", "--trials", ("budget", "trials"), int, "trial budget over all workers"),
    SpecFlag(
        "timeout_s",
        "--timeout-s",
        ("budget", "timeout_s"),
        float,
        "seconds each worker may run trials",
        aliases=("--timeout",),
    ),
    SpecFlag("seed", "--seed", ("seed",), int, "seeds the sampler (worker w uses seed + w)"),
    SpecFlag("sampler", "--sampler", ("sampler",), str, f"sampler: {', '.join(SAMPLERS)}"),
    SpecFlag(
        "parallelism",
        "--parallelism",
        ("parallelism",),
        int,
        "processes sharing the study",
        aliases=("--workers",),
    ),
    SpecFlag(
        "sensitivity",
        "--sensitivity",
        ("sensitivity",),
        str,
        "how per-layer sensitivity is measured: local (one forward and backward pass), "
        "full (a forward per layer and format) or auto (full for small models)",
    ),
    SpecFlag(
        "holdout",
        "--holdout",
        ("holdout",),
        float,
        "share of the evaluation samples held out to judge the chosen plan (0: none)",
        metavar="FRACTION",
    ),
)


def add_spec_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per row of :data:`SPEC_FLAGS` to ``parser``; defaults stay the spec's."""
    defaults = JobSpec().to_json()
    for row in SPEC_FLAGS:
        default = _at(defaults, row.path)
        shown = f" (default: {_shown(default)})" if default not in (None, [], {}) else ""
        parser.add_argument(
            row.flag,
            *row.aliases,
            dest=row.dest,
            type=row.read,
            action="append" if row.repeat else "store",
            metavar=row.metavar or row.option.upper(),
            help=row.help + shown,
        )


def spec_document(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON document (shaped like :meth:`JobSpec.to_json`) of the flags given.

    Raises:
        InvalidPlanError: a ``--pin`` without ``=``.
    """
    doc: dict[str, Any] = {}
    for row in SPEC_FLAGS:
        value = getattr(args, row.dest)
        if value is None:
            continue
        *parents, key = row.path
        node = doc
        for name in parents:
            node = node.setdefault(name, {})
        node[key] = row.to_json(value)
    return doc


def spec_from_args(args: argparse.Namespace) -> JobSpec:
    """The job spec the flags ask for.

    Raises:
        InvalidPlanError: the spec is invalid (the API's message, naming flags).
    """
    try:
        return JobSpec.from_json(spec_document(args))
    except InvalidPlanError as exc:
        raise InvalidPlanError(in_flag_words(exc.message)) from None


def in_flag_words(message: str) -> str:
    """A spec message with each backticked option (```targets.max_drop```) as its flag."""
    flags = {".".join(row.path): row.flag for row in SPEC_FLAGS}
    return re.sub(r"`([a-z_.]+)`", lambda m: flags.get(m[1], m[0]), message)


def _at(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for name in path:
        value = value[name]
    return value


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)
