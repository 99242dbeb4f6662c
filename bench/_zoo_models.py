"""The zoo of ``bench/zoo.py``: small random-weight ``transformers`` models and MPQ's examples.

Each :class:`ZooModel` builds an eval-mode module whose ``forward`` takes the
named tensors of :attr:`ZooModel.inputs` and returns one tensor (logits or the
last hidden state), plus seeded example inputs at any batch size. The
``transformers`` models are built from configs (no download) with
``torch.manual_seed(0)`` weights (batch-norm statistics set by one
training-mode pass over random inputs, see :func:`_calibrate_batch_norms`) and
used as people export them: their modules are not rewritten (in-place ops,
dropout, TF-style padding stay). Sizes are
small (2 layers, hidden 32-64, 32-64 px images, 32-token sequences) so the
whole zoo exports and runs on two CPU cores in minutes.
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


class _Pixels(nn.Module):
    """``pixel_values`` [B, 3, H, W] -> ``logits`` of an image classifier or segmenter."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(pixel_values=pixel_values).logits
        return out


class _Text(nn.Module):
    """``input_ids``, ``attention_mask`` (int64 [B, T]) -> ``logits`` of a text classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return out


class _Causal(nn.Module):
    """``input_ids`` (int64 [B, T]) -> next-token ``logits`` [B, T, V], no KV cache."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_ids=input_ids, use_cache=False).logits
        return out


class _Features(nn.Module):
    """Whisper's encoder: log-mel ``input_features`` [B, mels, frames] -> last hidden state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_features=input_features).last_hidden_state
        return out


class _Waveform(nn.Module):
    """Wav2Vec2: raw audio ``input_values`` [B, samples] -> last hidden state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(input_values=input_values).last_hidden_state
        return out


def _seeded(
    make: Callable[[], nn.Module], example: Callable[[int], Inputs]
) -> Callable[[], nn.Module]:
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
    Here gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1), and one training-mode forward
    over ``CALIBRATE_SAMPLES`` samples with ``momentum=None`` sets the running
    mean/var to that batch's. Conv and linear weights are untouched.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [bn.momentum for bn in norms]
    with torch.no_grad():
        for bn in norms:
            if bn.affine:
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0.0, 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(*example(CALIBRATE_SAMPLES))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum


def _gen(batch: int, salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * salt + batch)


def _image(size: int) -> Callable[[int], Inputs]:
    return lambda batch: (torch.randn(batch, 3, size, size, generator=_gen(batch, 1)),)


def _tokens(batch: int) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, SEQ), generator=_gen(batch, 2))


def _text(batch: int) -> Inputs:
    mask = torch.ones(batch, SEQ, dtype=torch.int64)
    mask[1::2, SEQ * 3 // 4 :] = 0  # every other row padded: the mask path really runs
    return _tokens(batch), mask


def _ids(batch: int) -> Inputs:
    return (_tokens(batch),)


def _mels(batch: int) -> Inputs:
    return (torch.randn(batch, 16, SEQ, generator=_gen(batch, 3)),)


def _audio_samples(batch: int) -> Inputs:
    return (torch.randn(batch, 1600, generator=_gen(batch, 4)),)


def _hf_image(name: str, size: int, make: Callable[[], nn.Module], source: str) -> ZooModel:
    example = _image(size)
    return ZooModel(
        name, ("pixel_values",), _seeded(lambda: _Pixels(make()), example), example, source
    )


def _vision() -> list[ZooModel]:
    import transformers as tf

    def cls(model: type, config: object) -> Callable[[], nn.Module]:
        return lambda: model(config)

    stages = {"hidden_sizes": [16, 32], "depths": [1, 1]}
    return [
        _hf_image(
            "resnet",
            32,
            cls(
                tf.ResNetForImageClassification,
                tf.ResNetConfig(
                    embedding_size=16, layer_type="bottleneck", num_labels=10, **stages
                ),
            ),
            "ResNetForImageClassification, bottleneck, 2 stages",
        ),
        _hf_image(
            "mobilenet_v1",
            32,
            cls(
                tf.MobileNetV1ForImageClassification,
                tf.MobileNetV1Config(image_size=32, depth_multiplier=0.25, num_labels=10),
            ),
            "MobileNetV1ForImageClassification, depth 0.25, tf_padding",
        ),
        _hf_image(
            "mobilenet_v2",
            32,
            cls(
                tf.MobileNetV2ForImageClassification,
                tf.MobileNetV2Config(image_size=32, depth_multiplier=0.25, num_labels=10),
            ),
            "MobileNetV2ForImageClassification, depth 0.25, tf_padding",
        ),
        _hf_image(
            "efficientnet",
            32,
            cls(
                tf.EfficientNetForImageClassification,
                tf.EfficientNetConfig(
                    image_size=32,
                    width_coefficient=0.25,
                    depth_coefficient=0.25,
                    hidden_dim=320,  # the top conv's width: round_filters(1280) at width 0.25
                    num_labels=10,
                ),
            ),
            "EfficientNetForImageClassification, width/depth 0.25",
        ),
        _hf_image(
            "convnext",
            32,
            cls(
                tf.ConvNextForImageClassification,
                tf.ConvNextConfig(num_stages=2, num_labels=10, **stages),
            ),
            "ConvNextForImageClassification, 2 stages",
        ),
        _hf_image(
            "regnet",
            32,
            cls(
                tf.RegNetForImageClassification,
                tf.RegNetConfig(embedding_size=16, groups_width=8, num_labels=10, **stages),
            ),
            "RegNetForImageClassification (Y: squeeze-excite), 2 stages",
        ),
        _hf_image(
            "vit",
            32,
            cls(
                tf.ViTForImageClassification,
                tf.ViTConfig(
                    image_size=32,
                    patch_size=8,
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=2,
                    intermediate_size=64,
                    num_labels=10,
                ),
            ),
            "ViTForImageClassification, 2 layers, hidden 32, patch 8",
        ),
        _hf_image(
            "segformer",
            64,
            cls(
                tf.SegformerForSemanticSegmentation,
                tf.SegformerConfig(
                    num_encoder_blocks=2,
                    depths=[1, 1],
                    sr_ratios=[2, 1],
                    hidden_sizes=[16, 32],
                    patch_sizes=[7, 3],
                    strides=[4, 2],
                    num_attention_heads=[1, 2],
                    mlp_ratios=[2, 2],
                    decoder_hidden_size=32,
                    num_labels=5,
                ),
            ),
            "SegformerForSemanticSegmentation, 2 blocks, 64 px",
        ),
    ]


def _language() -> list[ZooModel]:
    import transformers as tf

    small = {"num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": VOCAB}
    bert = tf.BertConfig(hidden_size=32, intermediate_size=64, max_position_embeddings=64, **small)
    distil = tf.DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
    )
    special = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}  # inside the small vocab
    gpt2 = tf.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64, **special
    )
    llama = tf.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_key_value_heads=1,
        max_position_embeddings=64,
        **small,
    )
    text = ("input_ids", "attention_mask")
    return [
        ZooModel(
            "bert",
            text,
            _seeded(lambda: _Text(tf.BertForSequenceClassification(bert)), _text),
            _text,
            "BertForSequenceClassification, 2 layers, hidden 32",
        ),
        ZooModel(
            "distilbert",
            text,
            _seeded(lambda: _Text(tf.DistilBertForSequenceClassification(distil)), _text),
            _text,
            "DistilBertForSequenceClassification, 2 layers, dim 32",
        ),
        ZooModel(
            "gpt2",
            ("input_ids",),
            _seeded(lambda: _Causal(tf.GPT2LMHeadModel(gpt2)), _ids),
            _ids,
            "GPT2LMHeadModel, 2 layers, n_embd 32, use_cache=False",
        ),
        ZooModel(
            "llama",
            ("input_ids",),
            _seeded(lambda: _Causal(tf.LlamaForCausalLM(llama)), _ids),
            _ids,
            "LlamaForCausalLM, 2 layers, hidden 32, GQA 2:1, use_cache=False",
        ),
    ]


def _audio() -> list[ZooModel]:
    import transformers as tf

    whisper = tf.WhisperConfig(
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        num_mel_bins=16,
        max_source_positions=SEQ // 2,
        vocab_size=VOCAB,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
    )
    wav2vec2 = tf.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=32,
    )
    return [
        ZooModel(
            "whisper_encoder",
            ("input_features",),
            _seeded(lambda: _Features(tf.WhisperModel(whisper).get_encoder()), _mels),
            _mels,
            "WhisperModel(...).get_encoder(), 2 layers, d_model 32, 16 mels x 32 frames",
        ),
        ZooModel(
            "wav2vec2",
            ("input_values",),
            _seeded(lambda: _Waveform(tf.Wav2Vec2Model(wav2vec2)), _audio_samples),
            _audio_samples,
            "Wav2Vec2Model, 2 layers, hidden 32, 2 conv layers, 1600 samples",
        ),
    ]


def _examples() -> list[ZooModel]:
    def digits() -> nn.Module:
        from examples.digits import train

        return train()

    def digits_example(batch: int) -> Inputs:
        from examples.digits import load_split

        x = torch.from_numpy(load_split()[1])
        return (x[:batch].clone(),)

    def minilm() -> nn.Module:
        from examples.minilm import load, model_dir

        return load(model_dir())[0]

    def minilm_example(batch: int) -> Inputs:
        from examples.minilm import INPUT_NAMES, SENTENCES, model_dir, tokenize

        arrays = tokenize(model_dir(), SENTENCES[:batch])
        return tuple(torch.from_numpy(arrays[n][:, :SEQ]).clone() for n in INPUT_NAMES)

    return [
        ZooModel(
            "digits", ("x",), digits, digits_example, "examples/digits.py DigitsCNN (trained)"
        ),
        ZooModel(
            "minilm",
            ("input_ids", "attention_mask", "token_type_ids"),
            minilm,
            minilm_example,
            "examples/minilm.py SentenceEncoder, all-MiniLM-L6-v2 real weights",
        ),
    ]


def zoo() -> list[ZooModel]:
    """Every model of the zoo, in table order."""
    return [*_vision(), *_language(), *_audio(), *_examples()]
