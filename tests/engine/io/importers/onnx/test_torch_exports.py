"""What torch.onnx really writes for the patterns of common CNNs and transformers imports and
matches eager torch and onnxruntime: TF-style "same" padding, reflect padding, resizing,
group/instance norm, splits, causal masks, rotary embeddings, einsum attention."""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.io.importers.onnx import import_onnx
from engine.ir import to_graph_module
from tests.engine.io.importers.onnx.test_import import LIMIT


class _Vision(nn.Module):
    """TF "same" padding computed from the input's shape (as transformers' MobileNet does),
    reflect padding, group and instance norm, a PReLU, and a segmentation-style upsampling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.norm = nn.GroupNorm(2, 8)
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.act = nn.PReLU(8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h = max((math.ceil(h / 2) - 1) * 2 + 3 - h, 0)
        pad_w = max((math.ceil(w / 2) - 1) * 2 + 3 - w, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        y = self.act(self.inorm(self.norm(self.conv(x))))
        y = F.pad(y, (1, 1, 1, 1), mode="reflect")
        small = F.interpolate(self.head(y), scale_factor=0.5, mode="nearest")
        return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


class _Decoder(nn.Module):
    """A GPT-style block: fused qkv split, causal mask, rotary embeddings, einsum attention,
    cumulative positions and a tied-weight-free head."""

    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.embed = nn.Embedding(50, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, 50)

    def _rotate(self, x: torch.Tensor) -> torch.Tensor:
        seq, half = x.shape[-2], x.shape[-1] // 2
        inv = 1.0 / (10000 ** (torch.arange(0, half, dtype=torch.float32) / half))
        angles = torch.outer(torch.arange(seq, dtype=torch.float32), inv)
        cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        x = self.embed(ids) + self.embed(positions)
        b, s, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (t.reshape(b, s, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        q, k = self._rotate(q), self._rotate(k)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(d // self.heads)
        causal = torch.ones(s, s, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, torch.finfo(scores.dtype).min)
        attn = torch.einsum("bhqk,bhkd->bqhd", scores.softmax(-1), v).reshape(b, s, d)
        return self.out(torch.maximum(attn, torch.minimum(x, attn)))


def _vision() -> tuple[nn.Module, tuple[torch.Tensor, ...], list[str]]:
    return _Vision(), (torch.randn(2, 3, 15, 18),), ["x"]


def _decoder() -> tuple[nn.Module, tuple[torch.Tensor, ...], list[str]]:
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.tensor([[1] * 7, [0, 0, 1, 1, 1, 1, 1]])
    return _Decoder(), (ids, mask), ["ids", "mask"]


_EXPORTERS = [
    pytest.param(False, id="torchscript"),
    pytest.param(
        True,
        id="dynamo",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("onnxscript") is None, reason="needs onnxscript"
        ),
    ),
]


@pytest.mark.parametrize("dynamo", _EXPORTERS)
@pytest.mark.parametrize("build", [_vision, _decoder], ids=["vision", "decoder"])
def test_torch_onnx_export_imports_and_matches(
    build: Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...], list[str]]],
    dynamo: bool,
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model, args, names = build()
    model.eval()
    path = tmp_path / "m.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, path, dynamo=dynamo, input_names=names, opset_version=18)
    ir = import_onnx(path, max_bytes=LIMIT)
    feeds = {n: a.numpy() for n, a in zip(names, args, strict=True)}
    reference = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ours, eager = to_graph_module(ir)(*args), model(*args)
    np.testing.assert_allclose(ours.numpy(), reference.run(None, feeds)[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours, eager, rtol=1e-4, atol=1e-5)
