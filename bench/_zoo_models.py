"""The zoo of ``bench/zoo.py``: small random-weight ``transformers`` models and MPQ's examples.

The ``transformers`` models are built from configs (no download) with
``torch.manual_seed(0)`` weights (batch norms given trained-looking statistics,
see :func:`_zoo_build.seeded`) and used as people export them: their modules are
not rewritten (in-place ops, dropout, TF-style padding stay). Sizes are small
(2 layers, hidden 32-64, 32-64 px images, 32-token sequences) so the whole zoo
exports and runs on two CPU cores in minutes. The examples are MPQ's trained
digits CNN and the real all-MiniLM-L6-v2 encoder (from its PyPI package, offline).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from _zoo_build import (
    SEQ,
    VOCAB,
    Causal,
    Features,
    Inputs,
    Pixels,
    Text,
    Waveform,
    ZooModel,
    audio_inputs,
    id_inputs,
    image_inputs,
    mel_inputs,
    seeded,
    text_inputs,
)
from torch import nn


def _labels(n: int) -> dict[str, Any]:
    """``num_labels=n``, which configs take as **kwargs (their stubs do not list it)."""
    return {"num_labels": n}


def _hf_image(name: str, size: int, make: Callable[[], nn.Module], source: str) -> ZooModel:
    example = image_inputs(size)
    return ZooModel(
        name, ("pixel_values",), seeded(lambda: Pixels(make()), example), example, source
    )


def _vision() -> list[ZooModel]:
    import transformers as tf

    def cls(model: type, config: object) -> Callable[[], nn.Module]:
        return lambda: model(config)

    stages: dict[str, Any] = {"hidden_sizes": [16, 32], "depths": [1, 1]}
    return [
        _hf_image(
            "resnet",
            32,
            cls(
                tf.ResNetForImageClassification,
                tf.ResNetConfig(
                    embedding_size=16, layer_type="bottleneck", **_labels(10), **stages
                ),
            ),
            "ResNetForImageClassification, bottleneck, 2 stages",
        ),
        _hf_image(
            "mobilenet_v1",
            32,
            cls(
                tf.MobileNetV1ForImageClassification,
                tf.MobileNetV1Config(image_size=32, depth_multiplier=0.25, **_labels(10)),
            ),
            "MobileNetV1ForImageClassification, depth 0.25, tf_padding",
        ),
        _hf_image(
            "mobilenet_v2",
            32,
            cls(
                tf.MobileNetV2ForImageClassification,
                tf.MobileNetV2Config(image_size=32, depth_multiplier=0.25, **_labels(10)),
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
                    **_labels(10),
                ),
            ),
            "EfficientNetForImageClassification, width/depth 0.25",
        ),
        _hf_image(
            "convnext",
            32,
            cls(
                tf.ConvNextForImageClassification,
                tf.ConvNextConfig(num_stages=2, **_labels(10), **stages),
            ),
            "ConvNextForImageClassification, 2 stages",
        ),
        _hf_image(
            "regnet",
            32,
            cls(
                tf.RegNetForImageClassification,
                tf.RegNetConfig(embedding_size=16, groups_width=8, **_labels(10), **stages),
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
                    **_labels(10),
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
                    **_labels(5),
                ),
            ),
            "SegformerForSemanticSegmentation, 2 blocks, 64 px",
        ),
    ]


def _language() -> list[ZooModel]:
    import transformers as tf

    small: dict[str, Any] = {"num_hidden_layers": 2, "num_attention_heads": 2, "vocab_size": VOCAB}
    bert = tf.BertConfig(hidden_size=32, intermediate_size=64, max_position_embeddings=64, **small)
    distil = tf.DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
    )
    special: dict[str, Any] = {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
    }  # inside the small vocab
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
            seeded(lambda: Text(tf.BertForSequenceClassification(bert)), text_inputs),
            text_inputs,
            "BertForSequenceClassification, 2 layers, hidden 32",
        ),
        ZooModel(
            "distilbert",
            text,
            seeded(lambda: Text(tf.DistilBertForSequenceClassification(distil)), text_inputs),
            text_inputs,
            "DistilBertForSequenceClassification, 2 layers, dim 32",
        ),
        ZooModel(
            "gpt2",
            ("input_ids",),
            seeded(lambda: Causal(tf.GPT2LMHeadModel(gpt2)), id_inputs),
            id_inputs,
            "GPT2LMHeadModel, 2 layers, n_embd 32, use_cache=False",
        ),
        ZooModel(
            "llama",
            ("input_ids",),
            seeded(lambda: Causal(tf.LlamaForCausalLM(llama)), id_inputs),
            id_inputs,
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
            seeded(lambda: Features(tf.WhisperModel(whisper).get_encoder()), mel_inputs),
            mel_inputs,
            "WhisperModel(...).get_encoder(), 2 layers, d_model 32, 16 mels x 32 frames",
        ),
        ZooModel(
            "wav2vec2",
            ("input_values",),
            seeded(lambda: Waveform(tf.Wav2Vec2Model(wav2vec2)), audio_inputs),
            audio_inputs,
            "Wav2Vec2Model, 2 layers, hidden 32, 2 conv layers, 1600 samples",
        ),
    ]


def _examples() -> list[ZooModel]:
    def digits() -> nn.Module:
        from examples.digits import train

        model: nn.Module = train()
        return model

    def digits_example(batch: int) -> Inputs:
        from examples.digits import load_split

        x = torch.from_numpy(load_split()[1])
        return (x[:batch].clone(),)

    def minilm() -> nn.Module:
        from examples.minilm import load, model_dir

        model: nn.Module = load(model_dir())[0]
        return model

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
