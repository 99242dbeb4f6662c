"""The contract of a weight scheme: what one handler of :mod:`engine.quant.formats` owns.

A *weight format* is a string in a plan (``int4g64``, ``cb16``, ``fp16``); a
*scheme* is the family that reads it and does everything scheme-specific with
the weights of that format. One :class:`WeightScheme` subclass per family
(affine, codebook, float) implements:

- ``parse``: format string -> :class:`WeightFormat` (or None: not this scheme's
  syntax);
- ``quantize``: a float weight matrix ``[rows, n]`` -> :class:`Quantized`
  (simulated values, integer codes, qparams);
- ``pack`` / ``unpack``: the stored tensors of ``model.mpq`` and back;
- ``nbytes``: the bytes ``pack`` writes, from the shape alone;
- ``integer_weight``: the integer kernel of integer-only execution -- codes and
  qparams -> :class:`IntWeight` ``w_i`` (int64) and scales ``s_w`` with
  ``w_i * s_w`` the simulated weight to within half a step of ``s_w``;
- ``emit_onnx``: the ONNX initializers and nodes computing the float weight, on
  a builder typed by :class:`~engine.quant._onnx.OnnxGraph` (this level does not
  import the exporter).

:class:`CodeScheme` is the base of schemes that store integer codes: it turns
``choose_qparams`` / ``fake_quantize`` / ``quantize_codes`` / ``column_quantizer``
into ``quantize``, with round-to-nearest or GPTQ.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

import torch

from engine.quant._affine import ScaleMethod
from engine.quant._gptq import QuantizeColumn, gptq_quantize_groups
from engine.quant._onnx import OnnxGraph
from engine.quant._packing import pack_bits, packed_nbytes, unpack_bits

__all__ = [
    "CodeScheme",
    "IntWeight",
    "OnnxWeight",
    "Quantized",
    "WeightFormat",
    "WeightScheme",
    "codes_nbytes",
    "pack_codes",
    "unpack_codes",
]

QP = TypeVar("QP")


@dataclass(frozen=True)
class WeightFormat:
    """A parsed weight format string.

    Attributes:
        text: the format string (``int4g64``).
        scheme: the name of the scheme that parsed it (``affine``).
        bits: bits per stored code (``log2 K`` for codebooks, 16/32 for float formats).
        group_size: inputs per scale for grouped formats, else None.
        codebook_size: ``K`` of a codebook format, else None.
        is_float: the weights stay float (no codes, no rounding, no outliers).
    """

    text: str
    scheme: str
    bits: int
    group_size: int | None = None
    codebook_size: int | None = None
    is_float: bool = False


@dataclass(frozen=True, eq=False)
class Quantized(Generic[QP]):
    """One weight as a scheme quantized (or unpacked) it.

    Attributes:
        values: float32, what the simulated model computes with.
        codes: integer codes, the shape of ``values``; None for float formats.
        qparams: the scheme's parameters (scales, codebook); None for float formats.
    """

    values: torch.Tensor
    codes: torch.Tensor | None = None
    qparams: QP | None = None


@dataclass(frozen=True, eq=False)
class IntWeight:
    """Integer weight ``w_i`` (int64, output channel first) with scales ``s_w``.

    ``scale`` is float64 ``[C_out]`` (per channel) or ``[C_out, G]`` (per group of
    ``group_size`` inputs); ``storage`` says how the integers were obtained.
    """

    w_i: torch.Tensor
    scale: torch.Tensor
    group_size: int | None
    storage: str


@dataclass(frozen=True)
class OnnxWeight:
    """What :meth:`WeightScheme.emit_onnx` emitted: the float32 value's name, how it is stored."""

    name: str
    stored: str
    note: str = ""


class WeightScheme(ABC, Generic[QP]):
    """One family of weight formats (see the module docstring for the contract).

    Class attributes:
        name: the registry key (``affine``); :attr:`WeightFormat.scheme` holds it.
        qparams_type: the class of the qparams it produces (None: it has none).
        syntax: the format strings it reads, for error messages (``cb2, cb4, ..., cb256``).
        parts: suffixes of the tensors ``pack`` stores for a weight ``W``
            (``""`` is ``W`` itself): the artifact reader sets these apart.
    """

    name: ClassVar[str]
    qparams_type: ClassVar[type | None]
    syntax: ClassVar[str]
    parts: ClassVar[tuple[str, ...]]

    @abstractmethod
    def parse(self, text: str) -> WeightFormat | None:
        """The format ``text`` names, or None if it is not this scheme's syntax.

        Raises:
            InvalidPlanError: this scheme's syntax with a value it does not allow.
        """

    @abstractmethod
    def quantize(
        self,
        matrix: torch.Tensor,
        fmt: WeightFormat,
        *,
        scale: ScaleMethod = "max",
        hessians: list[torch.Tensor] | None = None,
        qparams: QP | None = None,
    ) -> Quantized[QP]:
        """Quantize the float32 matrix ``[rows, n]`` (not modified) to ``fmt``.

        ``scale`` is the scale rule of schemes that have one; with ``hessians``
        (one ``[n, n]`` per conv group) rounding is GPTQ, else round to nearest.
        ``qparams``: the qparams this scheme already chose for the same matrix,
        format and scale rule (with the other rounding), used instead of choosing
        them again -- both roundings start from the same qparams.
        """

    @abstractmethod
    def pack(self, w: str, fmt: WeightFormat, q: Quantized[QP]) -> dict[str, torch.Tensor]:
        """The artifact tensors of weight ``w``, named ``w + part`` for parts in :attr:`parts`."""

    @abstractmethod
    def unpack(
        self,
        stored: Mapping[str, torch.Tensor],
        w: str,
        fmt: WeightFormat,
        shape: tuple[int, ...],
    ) -> Quantized[QP]:
        """Inverse of :meth:`pack`: values, codes (int32) and qparams in the weight's ``shape``."""

    @abstractmethod
    def nbytes(self, fmt: WeightFormat, shape: tuple[int, ...]) -> int:
        """Bytes :meth:`pack` stores for a weight of ``shape`` (output channel first)."""

    @abstractmethod
    def integer_weight(self, fmt: WeightFormat, q: Quantized[QP]) -> IntWeight | None:
        """The integers and scales integer-only execution computes with; None if it has none."""

    @abstractmethod
    def emit_onnx(
        self,
        g: OnnxGraph,
        tensor: str,
        fmt: WeightFormat,
        q: Quantized[QP],
        *,
        flip: bool,
    ) -> OnnxWeight:
        """Emit the initializers and nodes giving the float32 weight.

        ``flip`` asks for the 2-D transpose ``[in, out]``; names start with
        ``tensor`` (the IR tensor name).
        """


class CodeScheme(WeightScheme[QP]):
    """A scheme storing integer codes: ``quantize`` from its four primitives."""

    @abstractmethod
    def choose_qparams(self, matrix: torch.Tensor, fmt: WeightFormat, *, scale: ScaleMethod) -> QP:
        """The qparams of the matrix ``[rows, n]``."""

    @abstractmethod
    def fake_quantize(self, x: torch.Tensor, qp: QP) -> torch.Tensor:
        """Round ``x`` to the nearest representable values (float32)."""

    @abstractmethod
    def quantize_codes(self, x: torch.Tensor, qp: QP) -> torch.Tensor:
        """The integer codes of ``x`` (values already representable)."""

    @abstractmethod
    def column_quantizer(self, qp: QP, rows: slice) -> QuantizeColumn:
        """:meth:`fake_quantize` of one column of the rows ``rows`` (for GPTQ)."""

    def quantize(
        self,
        matrix: torch.Tensor,
        fmt: WeightFormat,
        *,
        scale: ScaleMethod = "max",
        hessians: list[torch.Tensor] | None = None,
        qparams: QP | None = None,
    ) -> Quantized[QP]:
        """Choose qparams (or take ``qparams``), round (nearest, or GPTQ with
        ``hessians``), take the codes."""
        qp = self.choose_qparams(matrix, fmt, scale=scale) if qparams is None else qparams
        if hessians is not None:
            values = gptq_quantize_groups(
                matrix, hessians, lambda rows: self.column_quantizer(qp, rows)
            )
        else:
            values = self.fake_quantize(matrix, qp)
        return Quantized(values, self.quantize_codes(values, qp), qp)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned codes in ``[0, 2^bits)`` as the artifact stores them.

    Up to 8 bits: densely bit-packed bytes (:func:`~engine.quant._packing.pack_bits`);
    wider: int16 holding ``code - 2^(bits-1)`` (the signed value, for 16 bits).
    """
    flat = codes.reshape(-1).long()
    if bits > 8:
        signed: torch.Tensor = flat - 2 ** (bits - 1)
        return signed.to(torch.int16)
    return pack_bits(flat, bits)


def codes_nbytes(count: int, bits: int) -> int:
    """Bytes :func:`pack_codes` stores for ``count`` codes of ``bits`` bits."""
    return 2 * count if bits > 8 else packed_nbytes(count, bits)


def unpack_codes(stored: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: ``count`` unsigned codes as int64."""
    if bits > 8:
        unsigned: torch.Tensor = stored.long() + 2 ** (bits - 1)
        return unsigned
    return unpack_bits(stored, bits, count)
