"""The decoded form of an ONNX ``ModelProto``: plain, frozen dataclasses.

:mod:`engine.io.importers.onnx._proto` fills these from the wire format; the importer
(:mod:`engine.io.importers.onnx`) reads them. Only :meth:`OnnxTensor.to_numpy` does any work:
it turns a tensor's stored bytes into a numpy array, checking them against ``dims`` and
``data_type``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.errors import CorruptFileError, ModelFormatError, OnnxExternalDataError

__all__ = [
    "TENSOR_DTYPES",
    "TYPED_FIELDS",
    "AttributeType",
    "AttributeValue",
    "NDArray",
    "OnnxAttribute",
    "OnnxGraph",
    "OnnxModel",
    "OnnxNode",
    "OnnxTensor",
    "OnnxValueInfo",
]

NDArray = npt.NDArray[Any]
# TensorProto.DataType -> (name, little-endian dtype of raw_data, typed field used without it)
TENSOR_DTYPES = {
    1: ("FLOAT", "<f4", "float_data"),
    2: ("UINT8", "<u1", "int32_data"),
    3: ("INT8", "<i1", "int32_data"),
    4: ("UINT16", "<u2", "int32_data"),
    5: ("INT16", "<i2", "int32_data"),
    6: ("INT32", "<i4", "int32_data"),
    7: ("INT64", "<i8", "int64_data"),
    9: ("BOOL", "<u1", "int32_data"),
    10: ("FLOAT16", "<f2", "int32_data"),
    11: ("DOUBLE", "<f8", "double_data"),
    12: ("UINT32", "<u4", "uint64_data"),
    13: ("UINT64", "<u8", "uint64_data"),
    16: ("BFLOAT16", "<u2", "int32_data"),
}
TYPED_FIELDS = {"float_data": "<f4", "int32_data": "<i4", "int64_data": "<i8"}
TYPED_FIELDS |= {"double_data": "<f8", "uint64_data": "<u8"}
AttributeType = IntEnum(
    "AttributeType", "FLOAT INT STRING TENSOR GRAPH FLOATS INTS STRINGS TENSORS GRAPHS"
)


@dataclass(frozen=True, slots=True, eq=False)
class OnnxTensor:
    """A ``TensorProto``: typed fields are read-only 1-D arrays, ``raw_data`` None if absent.

    ``data_location`` is 0 (DEFAULT) or 1 (EXTERNAL); ``offset`` is the byte offset of the
    message in the file. Equality compares values; tensors are unhashable.
    """

    name: str
    dims: tuple[int, ...]
    data_type: int
    raw_data: bytes | None
    float_data: NDArray
    int32_data: NDArray
    int64_data: NDArray
    double_data: NDArray
    uint64_data: NDArray
    data_location: int
    external_data: dict[str, str]
    offset: int = -1

    def _key(self) -> tuple[object, ...]:
        arrays = (getattr(self, k).tobytes() for k in TYPED_FIELDS)
        meta = (self.name, self.dims, self.data_type, self.raw_data, self.data_location)
        return (*meta, self.external_data, *arrays)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OnnxTensor) and self._key() == other._key()

    def to_numpy(self, external_loader: Callable[[dict[str, str]], bytes] | None = None) -> NDArray:
        """Return the values as a new, writable, native-endian array of shape ``dims``.

        BFLOAT16 comes back as float32 (numpy has no bfloat16), FLOAT16 as float16.

        Args:
            external_loader: For an EXTERNAL tensor: called with its ``external_data`` entries
                (``location``, ``offset``, ``length``, ...), returns its little-endian bytes.
                The caller decides which files may be read.

        Returns:
            The decoded array.

        Raises:
            ModelFormatError: The data type is not one MPQ reads.
            OnnxExternalDataError: The data is external and no loader was given.
            CorruptFileError: The stored data does not match ``dims`` and ``data_type``.
        """
        where = f"tensor {self.name!r} (TensorProto at byte offset {self.offset})"
        dims = self.dims if len(self.dims) <= 8 else f"({len(self.dims)} dims)"
        if self.data_type not in TENSOR_DTYPES:
            names = ", ".join(spec[0] for spec in TENSOR_DTYPES.values())
            raise ModelFormatError(f"{where} has data type {self.data_type}; MPQ reads {names}.")
        type_name, stored, typed = TENSOR_DTYPES[self.data_type]
        if min(self.dims, default=0) < 0:
            raise CorruptFileError(f"{where} has a negative dimension in dims {dims}.")
        count, raw, want = math.prod(self.dims), self.raw_data, np.dtype(stored)
        if self.data_location == 1:
            if external_loader is None:
                raise OnnxExternalDataError(
                    f"{where} keeps its data in the external file "
                    f"{self.external_data.get('location', '?')!r}; MPQ reads only self-contained "
                    ".onnx files. Embed the weights: onnx.save_model(onnx.load(path), out_path, "
                    "save_as_external_data=False)."
                )
            raw = external_loader(dict(self.external_data))
        elif self.data_location != 0:
            raise CorruptFileError(f"{where} has invalid data_location {self.data_location}.")
        if raw is not None:
            if len(raw) != count * want.itemsize:
                raise CorruptFileError(
                    f"{where} holds {len(raw)} bytes of data, but {type_name} with dims "
                    f"{dims} needs {count * want.itemsize}."
                )
            arr: NDArray = np.frombuffer(raw, want)
        else:
            arr = getattr(self, typed)
            if arr.size != count:
                raise CorruptFileError(
                    f"{where} holds {arr.size} {typed} values, dims need {count}."
                )
            if arr.dtype.kind != "f" and arr.dtype.itemsize != want.itemsize:
                bits = want.itemsize * 8  # narrow ints, float16/bfloat16 bits in int32_data
                low, high = (int(arr.min()), int(arr.max())) if count else (0, 0)
                if low < -(1 << (bits - 1)) or high >= 1 << bits:
                    raise CorruptFileError(f"{where} holds a value out of range for {type_name}.")
                arr = (arr.astype(np.int64) & ((1 << bits) - 1)).astype(f"<u{want.itemsize}")
            arr = arr.view(want)
        if type_name == "BOOL":
            if count and int(arr.max()) > 1:
                raise CorruptFileError(f"{where} is BOOL but holds a value other than 0 or 1.")
            arr = arr.astype(np.bool_)
        elif type_name == "BFLOAT16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        try:
            return arr.astype(arr.dtype.newbyteorder("="), copy=True).reshape(self.dims)
        except ValueError as exc:  # a zero-size shape too big for numpy
            raise CorruptFileError(f"{where}: numpy cannot represent dims {dims}.") from exc


@dataclass(frozen=True, slots=True)
class OnnxValueInfo:
    """A ``ValueInfoProto``; ``elem_type`` 0 and ``shape`` None for a non-tensor type.

    ``shape`` is None for unknown rank; a dim is an int (dim_value), str (dim_param) or None.
    """

    name: str
    elem_type: int
    shape: tuple[int | str | None, ...] | None


@dataclass(frozen=True, slots=True)
class OnnxGraph:
    """A ``GraphProto`` (the model's graph or a subgraph attribute)."""

    name: str
    nodes: tuple[OnnxNode, ...]
    initializers: tuple[OnnxTensor, ...]
    inputs: tuple[OnnxValueInfo, ...]
    outputs: tuple[OnnxValueInfo, ...]
    value_info: tuple[OnnxValueInfo, ...]


_Lists = tuple[float, ...] | tuple[int, ...] | tuple[bytes, ...] | tuple[OnnxTensor, ...]
AttributeValue = float | int | bytes | OnnxTensor | OnnxGraph | _Lists | tuple[OnnxGraph, ...]


@dataclass(frozen=True, slots=True)
class OnnxAttribute:
    """An ``AttributeProto``; ``value`` matches ``type`` (STRING and STRINGS are bytes)."""

    name: str
    type: AttributeType
    value: AttributeValue


@dataclass(frozen=True, slots=True)
class OnnxNode:
    """A ``NodeProto``; an empty input name marks an omitted optional input."""

    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, OnnxAttribute]


@dataclass(frozen=True, slots=True)
class OnnxModel:
    """A ``ModelProto``; ``opset`` maps each imported domain ("" is ai.onnx) to its version."""

    ir_version: int
    producer_name: str
    opset: dict[str, int]
    graph: OnnxGraph
