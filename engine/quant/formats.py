"""The weight-format registry: one handler (:class:`WeightScheme`) per weight scheme.

Every place that depends on how a weight format is quantized, stored, counted,
run on integers or exported looks its handler up here instead of branching on
types or re-parsing format strings (after torchao's ``_QUANTIZE_CONFIG_HANDLER``
and ``register_quantize_module_handler``)::

    fmt = weight_format("int4g64")           # WeightFormat(scheme="affine", bits=4, ...)
    scheme = scheme_for(fmt)                 # the AffineScheme handler
    q = scheme.quantize(matrix, fmt)         # values, codes, qparams
    tensors = scheme.pack("fc.weight", fmt, q)

Lookups: by format string or parsed format (:func:`scheme_for`), by scheme name
(:func:`weight_scheme`, the name :attr:`WeightFormat.scheme` holds), by qparams
type (:func:`scheme_for_qparams`). Built in: ``affine`` (``int2..int8``,
``int16``, ``int{b}g{G}``), ``codebook`` (``cb2..cb256``), ``float``
(``fp16``, ``fp32``). A new scheme is one module defining a
:class:`WeightScheme` subclass and one line in :data:`_BUILTIN` below
(``docs/adding-a-format.md``); :func:`register_weight_scheme` also adds one at
run time.
"""

from __future__ import annotations

import functools
from typing import Any

from engine.errors import InvalidPlanError
from engine.quant._onnx import OnnxGraph
from engine.quant._scheme import (
    CodeScheme,
    IntWeight,
    OnnxWeight,
    Quantized,
    WeightFormat,
    WeightScheme,
)
from engine.quant._scheme_affine import AffineScheme
from engine.quant._scheme_codebook import CodebookScheme
from engine.quant._scheme_float import FloatScheme

__all__ = [
    "CodeScheme",
    "IntWeight",
    "OnnxGraph",
    "OnnxWeight",
    "Quantized",
    "WeightFormat",
    "WeightScheme",
    "known_formats",
    "register_weight_scheme",
    "scheme_for",
    "scheme_for_qparams",
    "stored_parts",
    "unregister_weight_scheme",
    "weight_format",
    "weight_scheme",
    "weight_schemes",
]

_SCHEMES: dict[str, WeightScheme[Any]] = {}
"""Scheme name -> handler, in registration order (the order formats are parsed in)."""


def register_weight_scheme(scheme: WeightScheme[Any]) -> WeightScheme[Any]:
    """Add ``scheme`` to the registry; return it.

    Raises:
        ValueError: its name or qparams type is already registered.
    """
    if scheme.name in _SCHEMES:
        raise ValueError(f"a weight scheme named {scheme.name!r} is already registered")
    qp_type = scheme.qparams_type
    if qp_type is not None and any(s.qparams_type is qp_type for s in _SCHEMES.values()):
        raise ValueError(f"qparams type {qp_type.__name__} already has a weight scheme")
    _SCHEMES[scheme.name] = scheme
    _parse.cache_clear()
    return scheme


def unregister_weight_scheme(name: str) -> None:
    """Remove the scheme called ``name`` (a plug-in's, or a test's)."""
    weight_scheme(name)
    del _SCHEMES[name]
    _parse.cache_clear()


def weight_schemes() -> tuple[WeightScheme[Any], ...]:
    """The registered schemes, in registration order."""
    return tuple(_SCHEMES.values())


def known_formats() -> str:
    """The format strings every registered scheme reads, for messages."""
    return ", ".join(s.syntax for s in _SCHEMES.values())


def weight_format(text: str) -> WeightFormat:
    """Parse a weight format string.

    Raises:
        InvalidPlanError: no scheme reads ``text`` (the message lists the formats
            that exist), or its scheme refuses a value in it.
    """
    if not isinstance(text, str):
        raise InvalidPlanError(f"a weight format is a string such as 'int8', not {text!r}")
    return _parse(text)


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> WeightFormat:
    found = [fmt for s in _SCHEMES.values() if (fmt := s.parse(text)) is not None]
    if not found:
        raise InvalidPlanError(f"unknown weight format {text!r}; use {known_formats()}")
    if len(found) > 1:
        claimed = ", ".join(f.scheme for f in found)
        raise ValueError(f"weight format {text!r} is read by several schemes: {claimed}")
    return found[0]


def weight_scheme(name: str) -> WeightScheme[Any]:
    """The handler of the scheme called ``name`` (``affine``, ``codebook``, ``float``).

    Raises:
        InvalidPlanError: no scheme has that name (the message lists those that do).
    """
    scheme = _SCHEMES.get(name)
    if scheme is None:
        raise InvalidPlanError(f"unknown weight scheme {name!r}; registered: {', '.join(_SCHEMES)}")
    return scheme


def scheme_for(fmt: str | WeightFormat) -> WeightScheme[Any]:
    """The handler of a weight format (string or parsed)."""
    parsed = fmt if isinstance(fmt, WeightFormat) else weight_format(fmt)
    return weight_scheme(parsed.scheme)


def scheme_for_qparams(qparams: object) -> WeightScheme[Any]:
    """The handler whose :attr:`~WeightScheme.qparams_type` is the type of ``qparams``.

    Raises:
        TypeError: no registered scheme produces that type (None included).
    """
    for scheme in _SCHEMES.values():
        if scheme.qparams_type is not None and type(qparams) is scheme.qparams_type:
            return scheme
    known = ", ".join(s.qparams_type.__name__ for s in _SCHEMES.values() if s.qparams_type)
    raise TypeError(f"no weight scheme produces {type(qparams).__name__} qparams; known: {known}")


def stored_parts() -> frozenset[str]:
    """Suffixes of the tensors any scheme stores for a weight ``W`` in ``model.mpq``."""
    return frozenset(p for s in _SCHEMES.values() for p in s.parts)


_BUILTIN: tuple[WeightScheme[Any], ...] = (AffineScheme(), CodebookScheme(), FloatScheme())
for _scheme in _BUILTIN:
    register_weight_scheme(_scheme)
