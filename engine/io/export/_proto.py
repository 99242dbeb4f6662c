"""A minimal protobuf encoder for the subset of ``onnx.proto`` that MPQ writes.

Protobuf's wire format: every field is a key ``(field_number << 3) | wire_type``
as a varint, then its payload. Wire type 0 is a varint (ints, enums); 2 is
length-delimited (``varint(len) + bytes``: strings, bytes, sub-messages); 5 is a
little-endian 32-bit value (``float``). A varint stores 7 bits per byte, least
significant group first, with the high bit set on every byte but the last;
negative ints are encoded as their 64-bit two's complement (10 bytes).

``onnx.proto`` is proto2: repeated scalars (``dims``, ``ints``) are written
unpacked, one key per element, and fields are emitted in field-number order --
what the reference implementation writes, so :func:`model` gives the same bytes
as ``onnx.ModelProto.SerializeToString()`` for the same message. Worked example::

    attribute_int("axis", 1) == b"\\n\\x04axis\\x18\\x01\\xa0\\x01\\x02"
    #   field 1 (name), len 4, "axis"; field 3 (i) = 1; field 20 (type) = INT (2)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

__all__ = [
    "AttributeValue",
    "attribute",
    "attribute_int",
    "graph",
    "model",
    "node",
    "tensor",
    "value_info",
    "varint",
]

AttributeValue = int | float | str | Sequence[int] | Sequence[float]

# AttributeProto.AttributeType
_FLOAT, _INT, _STRING, _FLOATS, _INTS = 1, 2, 3, 6, 7


def varint(n: int) -> bytes:
    """Base-128 varint of ``n``; negative ``n`` as 64-bit two's complement."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def _int(field: int, n: int) -> bytes:
    return _key(field, 0) + varint(n)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + varint(len(data)) + data


def _str(field: int, s: str) -> bytes:
    return _bytes(field, s.encode("utf-8"))


def _float(field: int, x: float) -> bytes:
    return _key(field, 5) + struct.pack("<f", x)


def attribute(name: str, value: AttributeValue) -> bytes:
    """An ``AttributeProto``: int, float, string, or a list of ints or of floats.

    A list is ``INTS`` unless one of its elements is a float. An empty list is ``INTS``.
    """
    if isinstance(value, bool):
        raise TypeError("boolean attributes are ints in ONNX; pass int(value)")
    if isinstance(value, int):
        return attribute_int(name, value)
    if isinstance(value, float):
        return _str(1, name) + _float(2, value) + _int(20, _FLOAT)
    if isinstance(value, str):
        return _str(1, name) + _bytes(4, value.encode("utf-8")) + _int(20, _STRING)
    items = list(value)
    if any(isinstance(v, float) for v in items):
        return _str(1, name) + b"".join(_float(7, float(v)) for v in items) + _int(20, _FLOATS)
    return _str(1, name) + b"".join(_int(8, int(v)) for v in items) + _int(20, _INTS)


def attribute_int(name: str, value: int) -> bytes:
    """An ``INT`` ``AttributeProto``: name (1), i (3), type (20)."""
    return _str(1, name) + _int(3, value) + _int(20, _INT)


def tensor(name: str, data_type: int, dims: Sequence[int], raw: bytes) -> bytes:
    """A ``TensorProto`` with its data in ``raw_data`` (little-endian, row-major).

    Fields: dims (1, repeated), data_type (2), name (8), raw_data (9). Sub-byte
    types (INT4/UINT4) carry their packed bytes in ``raw``.
    """
    out = b"".join(_int(1, d) for d in dims) + _int(2, data_type)
    return out + _str(8, name) + _bytes(9, raw)


def value_info(name: str, elem_type: int, shape: Sequence[int | str]) -> bytes:
    """A ``ValueInfoProto`` of a tensor; an int dim is fixed, a str dim symbolic.

    ``ValueInfoProto{name (1), type (2): TypeProto{tensor_type (1): Tensor{elem_type (1),
    shape (2): TensorShapeProto{dim (1): Dimension{dim_value (1) | dim_param (2)}}}}}``.
    """
    dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def node(
    op_type: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    name: str = "",
    attributes: Iterable[bytes] = (),
    domain: str = "",
) -> bytes:
    """A ``NodeProto``: input (1), output (2), name (3), op_type (4), attribute (5), domain (7).

    An empty input name marks an omitted optional input.
    """
    out = b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs)
    if name:
        out += _str(3, name)
    out += _str(4, op_type) + b"".join(_bytes(5, a) for a in attributes)
    return out + (_str(7, domain) if domain else b"")


def graph(
    name: str,
    nodes: Iterable[bytes],
    initializers: Iterable[bytes],
    inputs: Iterable[bytes],
    outputs: Iterable[bytes],
) -> bytes:
    """A ``GraphProto``: node (1), name (2), initializer (5), input (11), output (12)."""
    out = b"".join(_bytes(1, n) for n in nodes) + _str(2, name)
    out += b"".join(_bytes(5, t) for t in initializers)
    out += b"".join(_bytes(11, v) for v in inputs)
    return out + b"".join(_bytes(12, v) for v in outputs)


def model(
    graph_bytes: bytes,
    *,
    ir_version: int,
    opset: int,
    producer_name: str = "mpq",
    producer_version: str = "",
) -> bytes:
    """A ``ModelProto`` importing the default domain at ``opset``.

    Fields: ir_version (1), producer_name (2), producer_version (3), graph (7),
    opset_import (8): ``OperatorSetIdProto{domain (1) = "", version (2)}`` (the empty
    domain written out, as the reference implementation does).
    """
    out = _int(1, ir_version) + _str(2, producer_name)
    if producer_version:
        out += _str(3, producer_version)
    out += _bytes(7, graph_bytes)
    return out + _bytes(8, _str(1, "") + _int(2, opset))
