"""4-bit packing per the ONNX spec and initializer bytes, checked against the onnx package."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from engine.errors import UnsupportedExportError
from engine.io.export import _proto
from engine.io.export._tensors import INT4, UINT4, onnx_dtype, pack_int4, raw_bytes, unpack_int4


def test_int4_packing_by_hand() -> None:
    # element 0 in the low nibble, element 1 in the high nibble; -2 is 0xE in two's complement
    assert pack_int4(torch.tensor([1, -2, 7])) == b"\xe1\x07"
    assert pack_int4(torch.tensor([-8, 7, 0, -1])) == b"\x78\xf0"
    assert pack_int4(torch.tensor([15, 0, 3]), signed=False) == b"\x0f\x03"
    assert unpack_int4(b"\xe1\x07", 3).tolist() == [1, -2, 7]


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_int4_round_trip_and_onnx_reads_the_same_values(signed: bool, n: int) -> None:
    gen = torch.Generator().manual_seed(n)
    lo, hi = (-8, 8) if signed else (0, 16)
    codes = torch.randint(lo, hi, (n,), generator=gen)
    packed = pack_int4(codes, signed=signed)
    assert len(packed) == (n + 1) // 2
    assert unpack_int4(packed, n, signed=signed).tolist() == codes.tolist()
    proto = onnx.TensorProto()
    proto.ParseFromString(_proto.tensor("c", INT4 if signed else UINT4, [n], packed))
    assert onnx.numpy_helper.to_array(proto).astype(np.int64).tolist() == codes.tolist()


def test_int4_refuses_out_of_range_codes() -> None:
    with pytest.raises(ValueError, match="4-bit"):
        pack_int4(torch.tensor([8]))


def test_raw_bytes_are_little_endian_row_major() -> None:
    t = torch.tensor([[1, 2], [3, 4]], dtype=torch.int16)
    assert raw_bytes(t) == b"\x01\x00\x02\x00\x03\x00\x04\x00"
    assert raw_bytes(t.T) == b"\x01\x00\x03\x00\x02\x00\x04\x00"  # transposed view: copied


def test_unknown_dtype_is_refused_with_its_code() -> None:
    with pytest.raises(UnsupportedExportError) as err:
        onnx_dtype(torch.complex64)
    assert err.value.code == "unsupported_export"
