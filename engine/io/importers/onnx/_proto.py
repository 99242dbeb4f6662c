"""Minimal, hostile-input-safe decoder of ONNX ``ModelProto`` files.

Reads the protobuf wire format for the subset of ``onnx.proto`` MPQ needs (field numbers checked
against onnx 1.23), so the engine imports neither ``onnx`` nor ``google.protobuf``. Every read is
bounds-checked against its enclosing message, nesting is capped and no allocation is sized by an
unchecked count: malformed input raises :class:`~engine.errors.CorruptFileError` with the byte
offset. Unknown fields are skipped, repeated numbers may be packed or not, and a singular message
field that occurs twice is merged, as protobuf does.

Memory is bounded by what the file declares, before it is allocated: the buffer may be a
read-only :class:`mmap.mmap` of the file (only the pages a field is copied from are read);
names and other strings are at most :data:`MAX_STRING_BYTES`; the messages, strings and list
entries one file may hold are counted against ``max_items`` as they are met (each costs a
Python object a hundred times the size of its 2-byte minimum on the wire); varints, which
expand up to 8x when decoded, are counted before they are decoded against
``max_varint_values``; an attribute's list holds at most :data:`MAX_ATTRIBUTE_VALUES` values.

Size: one file (about 400 lines): the message specs and the one decoder that walks them
are a single wire-format reader; the bounds checks, and the counts of what the file makes
it allocate, are in its inner loop.
"""

from __future__ import annotations

import mmap
import struct
from typing import Any

import numpy as np

from engine.errors import ArchiveLimitError, CorruptFileError, ModelFormatError
from engine.io.importers.onnx._types import (
    TYPED_FIELDS,
    AttributeType,
    AttributeValue,
    NDArray,
    OnnxAttribute,
    OnnxGraph,
    OnnxModel,
    OnnxNode,
    OnnxTensor,
    OnnxValueInfo,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_VARINT_VALUES",
    "MAX_ATTRIBUTE_VALUES",
    "MAX_STRING_BYTES",
    "decode_model",
]

DEFAULT_MAX_BYTES = 2**31 - 1  # protobuf's own limit for one serialized message
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ITEMS = 1 << 20
"""Messages, strings and list entries per file (a BERT-base export holds ~20,000)."""
DEFAULT_MAX_VARINT_VALUES = 1 << 22
"""Varint-encoded numbers per file (32 MiB decoded); exporters store weights as raw_data."""
MAX_STRING_BYTES = 1 << 20
"""Longest name or string field (tensor bytes, ``raw_data``, are bounded by the file only)."""
MAX_ATTRIBUTE_VALUES = 1 << 16
"""Most values in one attribute's list (``ints``, ``floats``, ``strings``...)."""
_LIMIT_HINT = (
    "The file is not an ONNX model as exporters write them; export it again with "
    "torch.onnx.export (weights are then stored as raw_data)."
)
_CHUNK = 1 << 20  # bytes of packed varints decoded per vectorised step
_Buffer = bytes | mmap.mmap
Spans = list[tuple[int, int]]  # the [start, end) pieces of one (possibly merged) message
_Spec = dict[int, tuple[str, str]]
_Fields = dict[str, Any]


def _spec(text: str) -> _Spec:
    """Parse ``"number:name:kind ..."``: kinds i int64, s string, b bytes, f float, m message;
    repeated V varints (as uint64 bytes), F floats, D doubles, S strings, B bytes, M messages."""
    return {int(num): (name, kind) for num, name, kind in (t.split(":") for t in text.split())}


_MODEL = _spec("1:ir_version:i 2:producer_name:s 7:graph:m 8:opset_import:M")
_OPSET = _spec("1:domain:s 2:version:i")
_GRAPH = _spec("1:node:M 2:name:s 5:initializer:M 11:input:M 12:output:M 13:value_info:M")
_NODE = _spec("1:input:S 2:output:S 3:name:s 4:op_type:s 5:attribute:M 7:domain:s")
_ATTR = _spec(
    "1:name:s 2:f:f 3:i:i 4:s:b 5:t:m 6:g:m 7:floats:F 8:ints:V 9:strings:B 10:tensors:M "
    "11:graphs:M 20:type:i"
)
_TENSOR = _spec(
    "1:dims:V 2:data_type:i 4:float_data:F 5:int32_data:V 7:int64_data:V 8:name:s 9:raw_data:b "
    "10:double_data:D 11:uint64_data:V 13:external_data:M 14:data_location:i"
)
_ENTRY = _spec("1:key:s 2:value:s")
_VALUE_INFO = _spec("1:name:s 2:type:m")
_TYPE = _spec("1:tensor:m")  # TypeProto.tensor_type; sequence, map, ... types are skipped
_TENSOR_TYPE = _spec("1:elem_type:i 2:shape:m")
_SHAPE = _spec("1:dim:M")
_DIM = _spec("1:value:i 2:value:s")  # a oneof: the last one on the wire wins
_WIRE: dict[str, tuple[int, ...]] = dict.fromkeys("sbmSBM", (2,))
_WIRE |= {"i": (0,), "f": (5,), "V": (0, 2), "F": (5, 2), "D": (1, 2)}
# AttributeType -> name of the AttributeProto field holding its value (field number type + 1)
_ATTR_FIELD = {t: _ATTR[t + 1][0] for t in range(1, 11)}


def _varint(buf: _Buffer, pos: int, end: int) -> tuple[int, int]:
    """Read one varint at ``pos``; return ``(value, next_pos)``."""
    if pos < end and buf[pos] < 0x80:  # the common one-byte case
        return buf[pos], pos + 1
    value = 0
    for i in range(pos, min(pos + 10, end)):
        value |= (buf[i] & 0x7F) << (7 * (i - pos))
        if buf[i] < 0x80:
            if i - pos == 9 and buf[i] > 1:
                raise CorruptFileError(f"varint at byte offset {pos} overflows 64 bits.")
            return value, i + 1
    if end - pos < 10:
        raise CorruptFileError(f"truncated varint at byte offset {pos} (message ends at {end}).")
    raise CorruptFileError(f"varint at byte offset {pos} is longer than 10 bytes.")


def _count_varints(buf: _Buffer, start: int, end: int) -> int:
    """How many varints ``buf[start:end]`` holds (its bytes below 0x80), 1 MiB at a time."""
    return sum(
        int(np.count_nonzero(np.frombuffer(buf[pos : min(end, pos + _CHUNK)], np.uint8) < 0x80))
        for pos in range(start, end, _CHUNK)
    )


def _packed_varints(buf: _Buffer, start: int, end: int) -> bytes:
    """Decode packed varints into little-endian uint64 bytes, vectorised, 1 MiB at a time."""
    parts, pos = [], start
    while pos < end:
        chunk = np.frombuffer(buf[pos : min(end, pos + _CHUNK)], np.uint8)  # a copy: no view
        stops = np.flatnonzero(chunk < 0x80)
        if stops.size == 0:
            raise CorruptFileError(f"unterminated varint at byte offset {pos} (ends at {end}).")
        firsts = np.concatenate(([0], stops[:-1] + 1))
        lens = stops - firsts + 1
        if int(lens.max()) > 10 or bool((chunk[stops[lens == 10]] > 1).any()):
            raise CorruptFileError(f"packed varints at byte offset {start} overflow 64 bits.")
        out = np.zeros(stops.size, np.uint64)
        for k in range(int(lens.max())):
            sel = lens > k
            out[sel] |= (chunk[firsts[sel] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        parts.append(out.astype("<u8").tobytes())
        pos += int(stops[-1]) + 1
    return b"".join(parts)


def _text(raw: bytes, at: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"invalid UTF-8 in the string at byte offset {at}.") from exc


def _array(f: _Fields, name: str, dtype: str) -> NDArray:
    """Return a repeated-number field as a read-only array (int32 varints arrive as uint64)."""
    data = f.get(name, b"")
    if dtype == "<i4":
        arr = (np.frombuffer(data, "<u8") & 0xFFFFFFFF).astype("<u4").view("<i4")
    else:
        arr = np.frombuffer(data, dtype)
    arr.flags.writeable = False
    return arr


def _int32(f: _Fields, name: str) -> int:
    """Return an int32 or enum field; like protobuf, keep the low 32 bits of the varint."""
    return ((int(f.get(name, 0)) & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


class _Decoder:
    """Decodes the messages of one buffer; ``depth`` counts enclosing messages."""

    def __init__(self, buf: _Buffer, max_depth: int, max_items: int, max_varints: int) -> None:
        self.buf, self.max_depth = buf, max_depth
        self.items, self.max_items = 0, max_items
        self.varints, self.max_varints = 0, max_varints

    def _count(self, what: str, at: int, items: int = 1, varints: int = 0) -> None:
        """Account for objects about to be made; refuse the file past the limits."""
        self.items += items
        self.varints += varints
        if self.items > self.max_items:
            raise ArchiveLimitError(
                f"the ONNX file holds more than {self.max_items} messages, names and list "
                f"entries (the limit was passed in {what} at byte offset {at}). {_LIMIT_HINT}"
            )
        if self.varints > self.max_varints:
            raise ArchiveLimitError(
                f"the ONNX file stores more than {self.max_varints} varint-encoded numbers "
                f"(the limit was passed in {what} at byte offset {at}). {_LIMIT_HINT}"
            )

    def scan(self, spans: Spans, spec: _Spec, what: str, depth: int) -> _Fields:
        """Read the fields in ``spec`` from a message's pieces, in order; skip other fields."""
        if depth > self.max_depth:
            at = spans[0][0] if spans else 0
            raise CorruptFileError(
                f"{what} at byte offset {at} is nested more than {self.max_depth} messages deep."
            )
        buf, out = self.buf, _Fields()
        for start, end in spans:
            pos = start
            while pos < end:
                at = pos
                key, pos = _varint(buf, pos, end)
                num, wire, val = key >> 3, key & 7, pos
                if wire not in (0, 1, 2, 5) or not 0 < num < 1 << 29:
                    raise CorruptFileError(f"invalid field key {key} in {what} at byte {at}.")
                if wire == 0:
                    val, pos = _varint(buf, pos, end)
                elif wire == 2:
                    size, val = _varint(buf, pos, end)
                    pos = val + size
                else:
                    pos += 8 if wire == 1 else 4
                if pos > end:
                    raise CorruptFileError(
                        f"field {num} of {what} at byte offset {at} runs past the end of its "
                        f"enclosing message (byte {end})."
                    )
                name, kind = spec.get(num, ("", ""))
                if not kind:
                    continue  # a field MPQ does not need
                if wire not in _WIRE[kind]:
                    raise CorruptFileError(f"{what}.{name} at byte {at} has wire type {wire}.")
                is_text = kind in "sSB" or (kind == "b" and name != "raw_data")
                if is_text and pos - val > MAX_STRING_BYTES:
                    raise ArchiveLimitError(
                        f"{what}.{name} at byte offset {at} is {pos - val} bytes; names and "
                        f"strings may have at most {MAX_STRING_BYTES}. {_LIMIT_HINT}"
                    )
                if kind in "mMSB":
                    self._count(what, at)
                if kind == "i":
                    out[name] = val - (1 << 64) if val >> 63 else val
                elif kind == "f":
                    out[name] = struct.unpack_from("<f", buf, val)[0]
                elif kind in "sb":
                    out[name] = _text(buf[val:pos], val) if kind == "s" else buf[val:pos]
                elif kind in "mM":
                    out.setdefault(name, []).append((val, pos))
                elif kind in "SB":
                    raw = buf[val:pos]
                    out.setdefault(name, []).append(_text(raw, val) if kind == "S" else raw)
                elif kind == "V":
                    count = 1 if wire == 0 else _count_varints(buf, val, pos)
                    self._count(f"{what}.{name}", at, items=0, varints=count)
                    data = (
                        val.to_bytes(8, "little") if wire == 0 else _packed_varints(buf, val, pos)
                    )
                    out.setdefault(name, bytearray()).extend(data)
                elif (pos - val) % (4 if kind == "F" else 8):
                    raise CorruptFileError(f"{what}.{name} at byte {at} holds a partial value.")
                else:  # F, D: one fixed-width value or a packed run of them
                    out.setdefault(name, bytearray()).extend(buf[val:pos])
        return out

    def tensor(self, spans: Spans, depth: int) -> OnnxTensor:
        """Decode a ``TensorProto``."""
        f = self.scan(spans, _TENSOR, "TensorProto", depth)
        dims = _array(f, "dims", "<i8")
        if dims.size > 64:  # numpy's limit; also bounds the tuple built below
            raise CorruptFileError(f"TensorProto at byte {spans[0][0]} has {dims.size} dims.")
        ext = [
            self.scan([s], _ENTRY, "StringStringEntryProto", depth + 1)
            for s in f.get("external_data", [])
        ]
        return OnnxTensor(
            name=f.get("name", ""),
            dims=tuple(dims.tolist()),
            data_type=_int32(f, "data_type"),
            raw_data=f.get("raw_data"),
            **{k: _array(f, k, dtype) for k, dtype in TYPED_FIELDS.items()},
            data_location=_int32(f, "data_location"),
            external_data={e.get("key", ""): e.get("value", "") for e in ext},
            offset=spans[0][0] if spans else -1,
        )

    def attribute(self, spans: Spans, depth: int) -> OnnxAttribute:
        """Decode an ``AttributeProto`` of a supported type."""
        f, d = self.scan(spans, _ATTR, "AttributeProto", depth), depth + 1
        name, kind = f.get("name", ""), _int32(f, "type")
        if kind == 0:  # written before IR v3: infer the type from the one value present
            present = [t for t, key in _ATTR_FIELD.items() if key in f]
            kind = present[0] if len(present) == 1 else 0
        if kind not in _ATTR_FIELD:
            error = ModelFormatError if 11 <= kind <= 14 else CorruptFileError
            raise error(
                f"attribute {name!r} at byte offset {spans[0][0]} has type {kind}; MPQ reads "
                "only float, int, string, tensor and graph attributes and lists of them."
            )
        key = _ATTR_FIELD[kind]
        value: AttributeValue
        if kind in (1, 2, 3):
            value = f.get(key, (0.0, 0, b"")[kind - 1])
        elif kind == 4:
            value = self.tensor(f.get(key, []), d)
        elif kind == 5:
            value = self.graph(f.get(key, []), d)
        elif kind in (6, 7):
            values = _array(f, key, "<f4" if kind == 6 else "<i8")
            if values.size > MAX_ATTRIBUTE_VALUES:
                raise ArchiveLimitError(
                    f"attribute {name!r} at byte offset {spans[0][0]} lists {values.size} "
                    f"values; at most {MAX_ATTRIBUTE_VALUES} are accepted. {_LIMIT_HINT}"
                )
            value = tuple(values.tolist())
        elif kind == 8:
            value = tuple(f.get(key, []))
        elif kind == 9:
            value = tuple(self.tensor([s], d) for s in f.get(key, []))
        else:
            value = tuple(self.graph([s], d) for s in f.get(key, []))
        return OnnxAttribute(name, AttributeType(kind), value)

    def node(self, spans: Spans, depth: int) -> OnnxNode:
        """Decode a ``NodeProto``; a repeated attribute name is corrupt."""
        f = self.scan(spans, _NODE, "NodeProto", depth)
        attributes: dict[str, OnnxAttribute] = {}
        for span in f.get("attribute", []):
            attr = self.attribute([span], depth + 1)
            if attributes.setdefault(attr.name, attr) is not attr:
                raise CorruptFileError(f"attribute {attr.name!r} repeated at byte {span[0]}.")
        names = (f.get("name", ""), f.get("op_type", ""), f.get("domain", ""))
        return OnnxNode(*names, tuple(f.get("input", [])), tuple(f.get("output", [])), attributes)

    def value_info(self, spans: Spans, depth: int) -> OnnxValueInfo:
        """Decode a ``ValueInfoProto``, keeping only tensor types."""
        f = self.scan(spans, _VALUE_INFO, "ValueInfoProto", depth)
        tp = self.scan(f.get("type", []), _TYPE, "TypeProto", depth + 1)
        tensor = self.scan(tp.get("tensor", []), _TENSOR_TYPE, "TypeProto.Tensor", depth + 2)
        shape: tuple[int | str | None, ...] | None = None
        if "shape" in tensor:
            dims = self.scan(tensor["shape"], _SHAPE, "TensorShapeProto", depth + 3)
            dim_spans = dims.get("dim", [])
            shape = tuple(
                self.scan([s], _DIM, "Dimension", depth + 4).get("value") for s in dim_spans
            )
        return OnnxValueInfo(f.get("name", ""), _int32(tensor, "elem_type"), shape)

    def graph(self, spans: Spans, depth: int) -> OnnxGraph:
        """Decode a ``GraphProto`` (the main graph or a subgraph attribute)."""
        f, d = self.scan(spans, _GRAPH, "GraphProto", depth), depth + 1
        nodes = tuple(self.node([s], d) for s in f.get("node", []))
        inits = tuple(self.tensor([s], d) for s in f.get("initializer", []))
        infos = [tuple(self.value_info([s], d) for s in f.get(k, [])) for k in _GRAPH_VALUES]
        return OnnxGraph(f.get("name", ""), nodes, inits, *infos)


_GRAPH_VALUES = ("input", "output", "value_info")


def decode_model(
    data: _Buffer,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_varint_values: int = DEFAULT_MAX_VARINT_VALUES,
) -> OnnxModel:
    """Decode a serialized ONNX ``ModelProto``.

    Args:
        data: The file's bytes, or a read-only :class:`mmap.mmap` of the file (read only
            where a field is copied out).
        max_bytes: Largest accepted input, checked before parsing.
        max_depth: Deepest accepted message nesting (each subgraph level adds 3).
        max_items: Most messages, strings and list entries in the file.
        max_varint_values: Most varint-encoded numbers in the file, counted before decoding.

    Returns:
        The decoded model; tensor values are converted only by :meth:`OnnxTensor.to_numpy`.

    Raises:
        ArchiveLimitError: ``data`` is larger than ``max_bytes``, or passes ``max_items``,
            ``max_varint_values``, :data:`MAX_STRING_BYTES` or :data:`MAX_ATTRIBUTE_VALUES`.
        CorruptFileError: ``data`` is not a well-formed ONNX model; the message gives the offset.
        ModelFormatError: A node has a sparse-tensor or type-proto attribute.
    """
    if len(data) > max_bytes:
        raise ArchiveLimitError(f"the ONNX file has {len(data)} bytes, over the {max_bytes} limit.")
    buf = data if isinstance(data, bytes | mmap.mmap) else bytes(data)
    dec = _Decoder(buf, max_depth, max_items, max_varint_values)
    f = dec.scan([(0, len(data))], _MODEL, "ModelProto", 0)
    if "graph" not in f:
        raise CorruptFileError("not an ONNX model: the ModelProto has no graph (field 7).")
    opset: dict[str, int] = {}
    for span in f.get("opset_import", []):
        entry = dec.scan([span], _OPSET, "OperatorSetIdProto", 1)
        domain, version = entry.get("domain", ""), entry.get("version", 0)
        if opset.setdefault(domain, version) != version:
            raise CorruptFileError(f"opset {domain!r} imported twice at byte offset {span[0]}.")
    graph = dec.graph(f["graph"], 1)
    return OnnxModel(f.get("ir_version", 0), f.get("producer_name", ""), opset, graph)
