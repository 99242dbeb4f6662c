"""Bit packing: hand-computed bytes, a pure-Python reference, properties, round trips, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from engine.quant import _packing, pack_bits, packed_nbytes, unpack_bits

WIDTHS = range(1, 9)
LENGTHS = (0, 1, 7, 8, 9, 1000, 1001)


def _random_codes(count: int, bits: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1 << bits, (count,), generator=gen, dtype=torch.int64)


def _reference_pack(codes: list[int], bits: int) -> list[int]:
    """Slow bit-stream packing: write each code's bits LSB first, then cut bytes LSB first."""
    stream = [(code >> k) & 1 for code in codes for k in range(bits)]
    stream += [0] * (-len(stream) % 8)
    return [sum(stream[8 * j + k] << k for k in range(8)) for j in range(len(stream) // 8)]


def _reference_unpack(data: list[int], bits: int, count: int) -> list[int]:
    stream = [(byte >> k) & 1 for byte in data for k in range(8)]
    return [sum(stream[i * bits + k] << k for k in range(bits)) for i in range(count)]


# --- 1. Hand-computed literal bytes (the docstring's worked examples, and more widths) ---

HAND_EXAMPLES = [
    # N = 1 + 2<<3 + 3<<6 + 4<<9 = 2257 = 0x08D1
    (3, [1, 2, 3, 4], [0xD1, 0x08]),
    # low nibble first: 2<<4|1, 0<<4|15, 9
    (4, [1, 2, 15, 0, 9], [0x21, 0x0F, 0x09]),
    # 3<<6 | 2<<4 | 1<<2 | 0 = 0xE4, then 3
    (2, [0, 1, 2, 3, 3], [0xE4, 0x03]),
    # bits 0, 2, 3, 7 set = 0x8D; bit 8 set = 0x01
    (1, [1, 0, 1, 1, 0, 0, 0, 1, 1], [0x8D, 0x01]),
    # 17 + 22<<5 = 721 = 0x02D1
    (5, [17, 22], [0xD1, 0x02]),
    # 63 + 21<<12 + 42<<18 = 0xA9503F
    (6, [63, 0, 21, 42], [0x3F, 0x50, 0xA9]),
    # 127 + 1<<14 = 0x407F, 21 bits -> 3 bytes
    (7, [127, 0, 1], [0x7F, 0x40, 0x00]),
    (8, [0, 255, 17], [0x00, 0xFF, 0x11]),
]


@pytest.mark.parametrize(("bits", "codes", "expected"), HAND_EXAMPLES)
def test_hand_computed_bytes(bits: int, codes: list[int], expected: list[int]) -> None:
    packed = pack_bits(torch.tensor(codes), bits)
    assert packed.dtype == torch.uint8
    assert packed.tolist() == expected
    assert unpack_bits(packed, bits, len(codes)).tolist() == codes


def test_docstring_states_the_asserted_examples() -> None:
    doc = _packing.__doc__
    assert doc is not None
    for text in ("[1, 2, 3, 4]", "[0xD1, 0x08]", "[1, 2, 15, 0, 9]", "[0x21, 0x0F, 0x09]"):
        assert text in doc
    assert "[0, 1, 2, 3, 3]" in doc and "[0xE4, 0x03]" in doc


@pytest.mark.parametrize(
    ("count", "bits", "expected"),
    [(0, 3, 0), (1, 1, 1), (8, 1, 1), (9, 1, 2), (4, 3, 2), (8, 3, 3), (3, 7, 3), (5, 8, 5)],
)
def test_packed_nbytes_hand_values(count: int, bits: int, expected: int) -> None:
    assert packed_nbytes(count, bits) == expected


# --- 2. Independent reference: exact equality with a pure-Python bit stream ---


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("count", LENGTHS)
def test_matches_reference(bits: int, count: int) -> None:
    codes = _random_codes(count, bits, seed=1000 * bits + count)
    expected = _reference_pack(codes.tolist(), bits)
    packed = pack_bits(codes, bits)
    assert packed.tolist() == expected
    assert unpack_bits(packed, bits, count).tolist() == _reference_unpack(expected, bits, count)


# --- 3. Properties ---


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("count", LENGTHS)
def test_length_and_zero_padding(bits: int, count: int) -> None:
    # All-ones codes: every payload bit is set, so any set padding bit would show.
    packed = pack_bits(torch.full((count,), (1 << bits) - 1), bits)
    assert packed.shape == (packed_nbytes(count, bits),) == (math.ceil(count * bits / 8),)
    used = count * bits % 8
    if count and used:
        assert packed[-1].item() == (1 << used) - 1
        assert packed[:-1].eq(0xFF).all()
    else:
        assert packed.eq(0xFF).all()


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_injective_over_all_short_sequences(bits: int) -> None:
    count = 3
    sequences = list(itertools.product(range(1 << bits), repeat=count))
    packed = {tuple(pack_bits(torch.tensor(seq), bits).tolist()) for seq in sequences}
    assert len(packed) == len(sequences)


@pytest.mark.parametrize("bits", WIDTHS)
def test_injective_on_random_pairs(bits: int) -> None:
    for seed in range(50):
        a = _random_codes(37, bits, seed=seed)
        b = a.clone()
        b[seed % 37] = (b[seed % 37] + 1 + seed % ((1 << bits) - 1)) % (1 << bits)
        assert not torch.equal(a, b)
        assert not torch.equal(pack_bits(a, bits), pack_bits(b, bits))


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint16]
)
@pytest.mark.parametrize("bits", [3, 7])
def test_any_integer_dtype_packs_the_same(dtype: torch.dtype, bits: int) -> None:
    codes = _random_codes(1001, bits, seed=bits)
    assert torch.equal(pack_bits(codes.to(dtype), bits), pack_bits(codes, bits))


def test_flattens_in_c_order_and_leaves_input_alone() -> None:
    codes = _random_codes(60, 5, seed=7).reshape(6, 10)
    before = codes.clone()
    transposed = codes.t()  # non-contiguous view
    assert torch.equal(pack_bits(codes, 5), pack_bits(codes.reshape(-1), 5))
    assert torch.equal(pack_bits(transposed, 5), pack_bits(transposed.contiguous().reshape(-1), 5))
    assert torch.equal(codes, before)

    packed = pack_bits(codes, 5)
    packed_before = packed.clone()
    unpack_bits(packed, 5, 60)
    assert torch.equal(packed, packed_before)


def test_outputs_do_not_alias_inputs() -> None:
    codes = torch.arange(256, dtype=torch.uint8)
    packed = pack_bits(codes, 8)
    packed[0] = 99
    assert codes[0].item() == 0
    unpacked = unpack_bits(packed, 8, 256)
    unpacked[1] = 5
    assert packed[1].item() == 1


# --- 4. Round trips ---


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("count", [*LENGTHS, 4097])
def test_round_trip(bits: int, count: int) -> None:
    codes = _random_codes(count, bits, seed=7 * bits + count)
    unpacked = unpack_bits(pack_bits(codes, bits), bits, count)
    assert unpacked.dtype == torch.int64
    assert unpacked.shape == (count,)
    assert torch.equal(unpacked, codes)


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("count", [1, 9, 1001])
def test_pack_of_unpack_is_identity_on_valid_bytes(bits: int, count: int) -> None:
    gen = torch.Generator().manual_seed(bits * count)
    nbytes = packed_nbytes(count, bits)
    data = torch.randint(0, 256, (nbytes,), generator=gen, dtype=torch.uint8)
    used = count * bits % 8
    if used:
        data[-1] &= (1 << used) - 1  # valid packed data has zero padding
    assert torch.equal(pack_bits(unpack_bits(data, bits, count), bits), data)


@pytest.mark.parametrize("bits", WIDTHS)
def test_signed_offset_round_trip(bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    half = 1 << (bits - 1)
    q = torch.randint(-half, half, (1001,), generator=gen)
    restored = unpack_bits(pack_bits(q + half, bits), bits, q.numel()) - half
    assert torch.equal(restored, q)


# --- 5. Invalid inputs ---


@pytest.mark.parametrize("bits", [0, 9, -1, 16, True, 3.0])
def test_bad_bits_raise(bits: object) -> None:
    with pytest.raises(ValueError, match=r"bits must be an int in 1\.\.8"):
        pack_bits(torch.tensor([0]), bits)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bits must be an int in 1\.\.8"):
        unpack_bits(torch.zeros(1, dtype=torch.uint8), bits, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"bits must be an int in 1\.\.8"):
        packed_nbytes(1, bits)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bits", "codes", "message"),
    [
        (3, [1, 2, 8, 9], "code 8 at flat index 2 is outside \\[0, 8\\)"),
        (3, [0, -1, 99], "code -1 at flat index 1 is outside \\[0, 8\\)"),
        (1, [0, 1, 2], "code 2 at flat index 2 is outside \\[0, 2\\)"),
        (8, [255, 256], "code 256 at flat index 1 is outside \\[0, 256\\)"),
        (4, [-8, 3], "code -8 at flat index 0 .*offset signed codes"),
    ],
)
def test_out_of_range_codes_raise(bits: int, codes: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pack_bits(torch.tensor(codes), bits)


@pytest.mark.parametrize(
    "codes", [torch.tensor([0.0, 1.0]), torch.tensor([True, False]), torch.tensor([1j])]
)
def test_non_integer_codes_raise(codes: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="integer dtype"):
        pack_bits(codes, 2)


def test_non_tensor_codes_raise() -> None:
    with pytest.raises(ValueError, match=r"must be a torch\.Tensor, got list"):
        pack_bits([1, 2], 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"must be a torch\.Tensor, got bytes"):
        unpack_bits(b"\x00", 2, 1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("nbytes", "bits", "count"), [(1, 3, 4), (3, 3, 4), (0, 1, 1), (1, 1, 0), (5, 8, 4)]
)
def test_wrong_packed_length_raises(nbytes: int, bits: int, count: int) -> None:
    expected = packed_nbytes(count, bits)
    with pytest.raises(ValueError, match=f"has {nbytes} bytes, .* need exactly {expected}"):
        unpack_bits(torch.zeros(nbytes, dtype=torch.uint8), bits, count)


@pytest.mark.parametrize(
    "packed", [torch.zeros(2, dtype=torch.int8), torch.zeros(2, dtype=torch.int64)]
)
def test_wrong_packed_dtype_raises(packed: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"1-D torch\.uint8 tensor, got dtype"):
        unpack_bits(packed, 3, 4)


def test_non_1d_packed_raises() -> None:
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        unpack_bits(torch.zeros(1, 2, dtype=torch.uint8), 3, 4)


def test_nonzero_padding_raises() -> None:
    # 4 codes of 3 bits use 12 bits: the top 4 bits of byte 1 must be zero.
    with pytest.raises(ValueError, match="padding bits of the last byte 0x18 are not zero"):
        unpack_bits(torch.tensor([0xD1, 0x18], dtype=torch.uint8), 3, 4)


@pytest.mark.parametrize("count", [-1, True, 2.0])
def test_bad_count_raises(count: object) -> None:
    with pytest.raises(ValueError, match="count must be a non-negative int"):
        unpack_bits(torch.zeros(1, dtype=torch.uint8), 3, count)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="count must be a non-negative int"):
        packed_nbytes(count, 3)  # type: ignore[arg-type]
