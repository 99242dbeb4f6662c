"""Dense bit packing of unsigned integer codes: a pure pack/unpack pair.

Layout (little-endian bit stream, the same for every width ``b`` in 1..8):
code ``i`` occupies bits ``[i*b, (i+1)*b)`` of one continuous bit stream, its
least significant bit first; byte ``j`` of the output holds stream bits
``8j .. 8j+7``, stream bit ``8j + k`` being bit ``k`` (value ``2**k``) of the
byte. Equivalently, reading the bytes as one little-endian integer ``N``,

    N = sum_i codes[i] * 2**(i*b)        bytes[j] = (N >> 8j) & 0xFF

There is no padding between codes, whatever the width (3, 5, 6 and 7 bits
straddle byte boundaries); only the last byte is padded, with zero bits, so
``n`` codes take exactly ``ceil(n*b/8)`` bytes (:func:`packed_nbytes`).

Worked examples (asserted byte for byte by the tests):

- 3 bits, codes ``[1, 2, 3, 4]`` = ``0b001, 0b010, 0b011, 0b100``. Stream,
  bit 0 first: ``100 010 110 001`` (12 bits) + ``0000`` padding.
  ``N = 1 + 2*2**3 + 3*2**6 + 4*2**9 = 1 + 16 + 192 + 2048 = 2257 = 0x08D1``,
  so the bytes are ``[0xD1, 0x08]``.
- 4 bits, codes ``[1, 2, 15, 0, 9]``: two codes per byte, low nibble first:
  ``0x21 (2<<4 | 1), 0x0F (0<<4 | 15), 0x09 (padding nibble 0 | 9)``,
  so the bytes are ``[0x21, 0x0F, 0x09]``.
- 2 bits, codes ``[0, 1, 2, 3, 3]``: four codes per byte, lowest bits first:
  ``3<<6 | 2<<4 | 1<<2 | 0 = 0xE4``, then ``3 = 0x03``,
  so the bytes are ``[0xE4, 0x03]``.

Implementation: ``g = 8 / gcd(b, 8)`` consecutive codes fill exactly
``g*b/8`` whole bytes (8 codes in 3 bytes at 3 bits, 2 codes in 1 byte at 4
bits), and ``g*b <= 56``, so each group is assembled as one little-endian
``uint64`` word ``sum_k code[k] << (k*b)`` whose low ``g*b/8`` bytes are the
group's bytes -- a handful of vectorised shifts, no per-code Python loop.

Codes are unsigned. Signed quantized values ``q`` in ``[-2**(b-1), 2**(b-1))``
must be offset by the caller to ``q + 2**(b-1)`` before packing, and shifted
back after unpacking.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["pack_bits", "packed_nbytes", "unpack_bits"]

MIN_BITS = 1
MAX_BITS = 8


def _check_bits(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an int in {MIN_BITS}..{MAX_BITS}, got {bits!r}")


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative int, got {count!r}")


def _group_shape(bits: int) -> tuple[int, int]:
    """``(codes, bytes)`` of the smallest run of ``bits``-bit codes that fills whole bytes."""
    group = 8 // math.gcd(bits, 8)
    return group, group * bits // 8


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes that :func:`pack_bits` produces for ``count`` codes of ``bits`` bits.

    Args:
        count: Number of codes, ``>= 0``.
        bits: Code width, 1..8.

    Returns:
        ``ceil(count * bits / 8)``.

    Raises:
        ValueError: If ``count`` is negative or ``bits`` is outside 1..8.
    """
    _check_count(count)
    _check_bits(bits)
    return (count * bits + 7) // 8


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned integer codes densely, ``bits`` bits each, into bytes.

    Code ``i`` (in C order) becomes bits ``[i*bits, (i+1)*bits)`` of the
    little-endian bit stream described in the module docstring; the final
    byte's unused high bits are zero. Example: ``pack_bits(tensor([1, 2, 3,
    4]), 3)`` is ``tensor([0xD1, 0x08], dtype=uint8)``.

    Args:
        codes: Integer tensor of any shape (flattened in C order) with every
            value in ``[0, 2**bits)``. Signed values must be offset by
            ``2**(bits-1)`` first. Not modified.
        bits: Code width, 1..8.

    Returns:
        A new 1-D ``torch.uint8`` CPU tensor of ``packed_nbytes(codes.numel(),
        bits)`` bytes.

    Raises:
        ValueError: If ``bits`` is outside 1..8, ``codes`` is not an integer
            tensor, or a code is outside ``[0, 2**bits)`` (the first such code
            and its flat index are named).
    """
    _check_bits(bits)
    if not isinstance(codes, torch.Tensor):
        raise ValueError(f"codes must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype == torch.bool or codes.is_floating_point() or codes.is_complex():
        raise ValueError(f"codes must have an integer dtype, got {codes.dtype}")
    flat = codes.detach().reshape(-1).cpu().numpy()
    bad = (flat < 0) | (flat >= (1 << bits))
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(
            f"code {int(flat[index])} at flat index {index} is outside [0, {1 << bits}) "
            f"for bits={bits}; offset signed codes by 2**(bits-1) before packing"
        )
    count = flat.size
    if bits == MAX_BITS:
        return torch.from_numpy(flat.astype(np.uint8))  # astype copies: never alias the input
    group, group_bytes = _group_shape(bits)
    ngroups = -(-count // group)
    padded = np.zeros(ngroups * group, dtype=np.uint64)  # zero codes pad the last group
    padded[:count] = flat
    grouped = padded.reshape(ngroups, group)
    words = np.zeros(ngroups, dtype=np.uint64)
    for k in range(group):  # at most 8 whole-array shifts
        words |= grouped[:, k] << np.uint64(k * bits)
    group_u8 = words.astype("<u8").view(np.uint8).reshape(ngroups, 8)[:, :group_bytes]
    return torch.from_numpy(group_u8.reshape(-1)[: packed_nbytes(count, bits)])


def unpack_bits(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Recover ``count`` codes of ``bits`` bits from :func:`pack_bits` output.

    The inverse of :func:`pack_bits`: ``unpack_bits(pack_bits(c, b), b,
    c.numel())`` equals ``c.reshape(-1)`` as ``int64``. Code ``i`` is read from
    bits ``[i*bits, (i+1)*bits)`` of the little-endian bit stream. The result
    is ``int64`` so that it can index a codebook directly and be shifted back to
    signed values (``q = code - 2**(bits-1)``) without wrapping.

    Args:
        packed: 1-D ``torch.uint8`` tensor of exactly ``ceil(count*bits/8)``
            bytes whose padding bits (stream bits ``count*bits`` onward) are
            zero. Not modified.
        bits: Code width, 1..8.
        count: Number of codes to recover, ``>= 0``.

    Returns:
        A new 1-D ``torch.int64`` CPU tensor of length ``count``, values in
        ``[0, 2**bits)``.

    Raises:
        ValueError: If ``bits`` or ``count`` is invalid, ``packed`` is not a
            1-D uint8 tensor of the expected length, or its padding bits are
            not zero (a sign of a wrong ``count``/``bits`` or corrupt data).
    """
    _check_bits(bits)
    _check_count(count)
    if not isinstance(packed, torch.Tensor):
        raise ValueError(f"packed must be a torch.Tensor, got {type(packed).__name__}")
    if packed.dtype != torch.uint8 or packed.dim() != 1:
        raise ValueError(
            f"packed must be a 1-D torch.uint8 tensor, got dtype {packed.dtype} "
            f"with shape {tuple(packed.shape)}"
        )
    expected = packed_nbytes(count, bits)
    if packed.numel() != expected:
        raise ValueError(
            f"packed has {packed.numel()} bytes, but {count} codes of {bits} bits "
            f"need exactly {expected}"
        )
    data = packed.detach().cpu().numpy()
    nbits = count * bits
    if nbits % 8 and int(data[-1]) >> (nbits % 8):
        raise ValueError(
            f"padding bits of the last byte 0x{int(data[-1]):02X} are not zero for "
            f"{count} codes of {bits} bits; check count and bits"
        )
    if bits == MAX_BITS:
        return torch.from_numpy(data.astype(np.int64))
    group, group_bytes = _group_shape(bits)
    ngroups = -(-count // group)
    padded = np.zeros(ngroups * group_bytes, dtype=np.uint8)
    padded[: data.size] = data
    word_u8 = np.zeros((ngroups, 8), dtype=np.uint8)
    word_u8[:, :group_bytes] = padded.reshape(ngroups, group_bytes)
    words = word_u8.view("<u8").reshape(ngroups)
    codes = np.empty((ngroups, group), dtype=np.int64)
    mask = np.uint64((1 << bits) - 1)
    for k in range(group):  # at most 8 whole-array shifts
        codes[:, k] = (words >> np.uint64(k * bits)) & mask
    return torch.from_numpy(codes.reshape(-1)[:count])
