"""The codebook weight scheme: ``cb{K}``, a k-means codebook of K values per layer.

Each weight stores the index ``i`` of its value in the sorted float16 codebook
``c`` (:mod:`engine.quant._codebook`); ``W = c[i]``.

- parse: ``cb{K}`` with K in {2, 4, ..., 256} (``log2 K``-bit indices);
- stored (``model.mpq``): ``W.codes`` -- the indices bit-packed at ``log2 K`` bits;
  ``W.codebook`` -- the K centroids as float16;
- bytes: ``ceil(n log2(K) / 8) + 2K``;
- integer kernel: the centroids quantized to int8 with one scale
  ``s_cb = max|c| / 127``, ``c_i = round(c / s_cb)``; ``w_i = c_i[i]`` (a lookup)
  and every channel's scale is ``s_cb``: ``|w_i s_cb - W| <= s_cb / 2``;
- ONNX: uint8 indices and the float16 codebook,
  ``W = Gather(Cast<float>(c), Cast<int32>(i))`` (onnxruntime rejects uint8
  indices; the indices keep ``W``'s shape, so no reshape is needed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from engine.errors import InvalidPlanError
from engine.quant._affine import ScaleMethod
from engine.quant._codebook import (
    CodebookQParams,
    choose_qparams_codebook,
    fake_quantize_codebook,
    quantize_codebook,
)
from engine.quant._gptq import QuantizeColumn
from engine.quant._onnx import FLOAT, INT32, UINT8, OnnxGraph, le_bytes
from engine.quant._scheme import (
    CodeScheme,
    IntWeight,
    OnnxWeight,
    Quantized,
    WeightFormat,
    codes_nbytes,
    pack_codes,
    unpack_codes,
)

__all__ = ["CODEBOOK_BITS", "CodebookScheme"]

CODEBOOK_BITS = 8
"""Width of the integer centroids integer-only execution uses."""

_CB = re.compile(r"cb(\d+)")
_SIZES = frozenset(2**i for i in range(1, 9))


class CodebookScheme(CodeScheme[CodebookQParams]):
    """Shared-value (k-means) weights with ``log2 K``-bit indices."""

    name = "codebook"
    qparams_type = CodebookQParams
    syntax = "cb2..cb256"
    parts = (".codes", ".codebook")

    def parse(self, text: str) -> WeightFormat | None:
        m = _CB.fullmatch(text)
        if m is None:
            return None
        k = int(m[1])
        if k not in _SIZES:
            raise InvalidPlanError(f"weight format {text!r}: codebook size must be 2, 4, ..., 256")
        return WeightFormat(text, self.name, k.bit_length() - 1, codebook_size=k)

    def choose_qparams(
        self, matrix: torch.Tensor, fmt: WeightFormat, *, scale: ScaleMethod
    ) -> CodebookQParams:
        assert fmt.codebook_size is not None
        return choose_qparams_codebook(matrix, fmt.codebook_size)

    def fake_quantize(self, x: torch.Tensor, qp: CodebookQParams) -> torch.Tensor:
        return fake_quantize_codebook(x, qp)

    def quantize_codes(self, x: torch.Tensor, qp: CodebookQParams) -> torch.Tensor:
        return quantize_codebook(x, qp)

    def column_quantizer(self, qp: CodebookQParams, rows: slice) -> QuantizeColumn:
        return lambda values, j: fake_quantize_codebook(values, qp)

    def pack(
        self, w: str, fmt: WeightFormat, q: Quantized[CodebookQParams]
    ) -> dict[str, torch.Tensor]:
        assert q.codes is not None and q.qparams is not None
        return {
            f"{w}.codebook": q.qparams.centroids.half(),
            f"{w}.codes": pack_codes(q.codes, fmt.bits),
        }

    def unpack(
        self,
        stored: Mapping[str, torch.Tensor],
        w: str,
        fmt: WeightFormat,
        shape: tuple[int, ...],
    ) -> Quantized[CodebookQParams]:
        index = unpack_codes(stored[f"{w}.codes"], fmt.bits, math.prod(shape))
        qp = CodebookQParams(stored[f"{w}.codebook"].float())
        values = qp.centroids[index]
        return Quantized(values.reshape(shape), index.reshape(shape).to(torch.int32), qp)

    def nbytes(self, fmt: WeightFormat, shape: tuple[int, ...]) -> int:
        assert fmt.codebook_size is not None
        return codes_nbytes(math.prod(shape), fmt.bits) + 2 * fmt.codebook_size

    def integer_weight(self, fmt: WeightFormat, q: Quantized[CodebookQParams]) -> IntWeight:
        assert q.codes is not None and q.qparams is not None
        c = q.qparams.centroids.double()
        qmax = 2 ** (CODEBOOK_BITS - 1) - 1
        s_cb = float(c.abs().max()) / qmax or 1.0
        c_i = torch.round(c / s_cb).clamp(-qmax, qmax).to(torch.int64)
        scale = torch.full((q.values.shape[0],), s_cb, dtype=torch.float64)
        storage = f"{fmt.text}: int{CODEBOOK_BITS} centroids, lookup"
        return IntWeight(c_i[q.codes.long()], scale, None, storage)

    def emit_onnx(
        self,
        g: OnnxGraph,
        tensor: str,
        fmt: WeightFormat,
        q: Quantized[CodebookQParams],
        *,
        flip: bool,
    ) -> OnnxWeight:
        assert q.codes is not None and q.qparams is not None
        idx = q.codes.T if flip else q.codes
        idx_u8 = g.initializer(
            f"{tensor}/idx", UINT8, tuple(idx.shape), le_bytes(idx.to(torch.uint8))
        )
        book = g.constant(q.qparams.centroids.half(), f"{tensor}/codebook")
        book_f = g.add("Cast", [book], hint=tensor, to=FLOAT)
        idx_i32 = g.add("Cast", [idx_u8], hint=tensor, to=INT32)
        name = g.add("Gather", [book_f, idx_i32], hint=tensor, axis=0)
        k = q.qparams.centroids.numel()
        stored = f"UINT8 indices -> Cast(int32) -> Gather on a float16 codebook of {k}"
        return OnnxWeight(name, stored)
