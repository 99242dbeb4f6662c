"""Building blocks of the zoo of ``bench/zoo.py``: the model record, wrappers, seeded inputs.

A :class:`ZooModel` builds an eval-mode module whose ``forward`` takes the
named tensors of :attr:`ZooModel.inputs` and returns one tensor; the wrappers
here turn a ``transformers`` model into such a module (logits or the last
hidden state, ``use_cache=False`` for decoders) without touching its modules.
Inputs are seeded per batch size, so every run and every export sees the same.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models come from configs or a wheel, never a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SEQ = 32
VOCAB = 1000
SEED = 0
CALIBRATE_SAMPLES = 16

Inputs = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class ZooModel:
    """A model of the zoo: how to build it and how to make its inputs.

    Attributes:
        name: the row name in the table (``resnet``, ``bert``, ...).
        inputs: the forward's argument names, also the ONNX input names.
        build: returns the eval-mode module (seeded: the same weights every call).
        example: ``example(batch)`` -> seeded inputs with ``batch`` rows, in ``inputs`` order.
        source: what the model is, for the report.
    """

    name: str
    inputs: tuple[str, ...]
    build: Callable[[], nn.Module]
    example: Callable[[int], Inputs]
    source: str


class Pixels(nn.Module):
    """``pixel_values`` [B, 3, H, W] -> ``logits`` of an image classifier or segmenter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(pixel_values=pixel_values).logits
        return out


class Text(nn.Module):
    """``input_ids``, ``attention_mask`` (int64 [B, T]) -> ``logits`` of a text classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return out


class Causal(nn.Module):
    """``input_ids`` (int64 [B, T]) -> next-token ``logits`` [B, T, V], no KV cache."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_ids=input_ids, use_cache=False).logits
        return out


class Features(nn.Module):
    """Whisper's encoder: log-mel ``input_features`` [B, mels, frames] -> last hidden state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_features=input_features).last_hidden_state
        return out


class Waveform(nn.Module):
    """Wav2Vec2: raw audio ``input_values`` [B, samples] -> last hidden state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_values=input_values).last_hidden_state
        return out


def seeded(
    make: Callable[[], nn.Module], example: Callable[[int], Inputs]
) -> Callable[[], nn.Module]:
    """A builder: ``make()`` under ``torch.manual_seed(SEED)``, batch norms calibrated, eval."""

    def build() -> nn.Module:
        torch.manual_seed(SEED)
        model = make()
        _calibrate_batch_norms(model, example)
        return model.eval()

    return build


def _calibrate_batch_norms(model: nn.Module, example: Callable[[int], Inputs]) -> None:
    """Give batch norms trained-looking parameters and the statistics of the data.

    With ``transformers``' initialisation (batch-norm gamma ~ N(0, 0.02) in
    EfficientNet, running statistics mean 0 / var 1) the signal of a deep conv
    net fades to ~1e-35, leaving nothing for the error figures to measure.
    Here gamma ~ U(0.5, 1), beta ~ U(0, 1), and one training-mode forward over
    ``CALIBRATE_SAMPLES`` samples with ``momentum=None`` sets the running
    mean/var to that batch's. Conv and linear weights are untouched. A positive
    beta keeps ReLU channels alive: with beta ~ N(0, 0.1) some channels were
    zero for almost every input, the next batch norm scaled their noise by up
    to ``1/sqrt(eps)``, and a 1e-3 input change moved MobileNet's logits by 4-5%
    (0.3% now), so one quantization step anywhere swamped every error figure.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [bn.momentum for bn in norms]
    with torch.no_grad():
        for bn in norms:
            if bn.affine:
                bn.weight.uniform_(0.5, 1.0)
                bn.bias.uniform_(0.0, 1.0)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(*example(CALIBRATE_SAMPLES))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum


def _gen(batch: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * salt + batch)


def image_inputs(size: int) -> Callable[[int], Inputs]:
    return lambda batch: (torch.randn(batch, 3, size, size, generator=_gen(batch, 1)),)


def _tokens(batch: int) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, SEQ), generator=_gen(batch, 2))


def text_inputs(batch: int) -> Inputs:
    mask = torch.ones(batch, SEQ, dtype=torch.int64)
    mask[1::2, SEQ * 3 // 4 :] = 0  # every other row padded: the mask path really runs
    return _tokens(batch), mask


def id_inputs(batch: int) -> Inputs:
    return (_tokens(batch),)


def mel_inputs(batch: int) -> Inputs:
    return (torch.randn(batch, 16, SEQ, generator=_gen(batch, 3)),)


def audio_inputs(batch: int) -> Inputs:
    return (torch.randn(batch, 1600, generator=_gen(batch, 4)),)
