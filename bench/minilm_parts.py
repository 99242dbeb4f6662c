"""Where MiniLM's cosine goes: the word embedding alone and the encoder alone, per weight format.

Run: ``nice .venv/bin/python bench/minilm_parts.py [--embedding F1,F2,...] [--encoder F1,...]
[--work DIR]``

The data and evaluator of ``bench/minilm_goal.py`` (the real all-MiniLM-L6-v2, 256
calibration and 512 evaluation sentences, half held out; scores here are on the 256-sentence
search split), weight-only (activations float), ``mse`` scales. Two kinds of plan, every
other layer left fp32:

* ``word=F``: only ``embeddings.word_embeddings`` (30,522 x 384, 52% of the weights) in
  format ``F`` (round to nearest: a lookup table has no input Hessian);
* ``enc=F``: every encoder linear (36 layers, 47% of the weights) in ``F`` with GPTQ.

Printed per plan: the payload of the whole model, its compression against fp32 and the mean
cosine to fp32. The two losses roughly add, which bounds what any mix of these formats can
reach: the search's ``>= 8x at cosine >= 0.99`` needs both parts near 4 bits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.minilm_goal import build
from engine.quant import LayerFormat, QuantPlan
from search import Evaluator, JobSpec, Targets, open_evaluator

WORD = "embeddings.word_embeddings"
FLOAT = LayerFormat("fp32", activation="float")


def score(ev: Evaluator, tag: str, chosen: dict[str, LayerFormat]) -> None:
    plan = QuantPlan({x.name: chosen.get(x.name, FLOAT) for x in ev.layers})
    t = time.perf_counter()
    value = ev.evaluate(plan).value
    size = ev.payload_bytes(plan)
    print(
        f"{tag:28s} {size:>12,} B {ev.float_bytes / size:5.2f}x  cosine {value:.4f} "
        f"({time.perf_counter() - t:.0f} s)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--embedding", default="int3,int3g128,int3g64,cb8,int4,int4g128,int4g64,cb16"
    )
    parser.add_argument("--encoder", default="int3g128,int4,int4g128,int4g64,int5")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "minilm.pt2").exists():
            build(work)
        spec = JobSpec(metric="cosine", targets=Targets(min_metric=0.99), holdout=0.5)
        config = spec.search_config(model=str(work / "minilm.pt2"), data=str(work / "minilm.npz"))
        ev = open_evaluator(config, trust_uploads=True)
        print(f"fp32 {ev.float_bytes:,} B; {len(ev.layers)} layers", flush=True)
        for fmt in filter(None, args.embedding.split(",")):
            score(ev, f"word={fmt}", {WORD: LayerFormat(fmt, "float", "nearest", "mse")})
        encoder = [x.name for x in ev.layers if x.name not in ev.embeddings]
        for fmt in filter(None, args.encoder.split(",")):
            layer = LayerFormat(fmt, "float", "gptq", "mse")
            score(ev, f"enc={fmt}/gptq", dict.fromkeys(encoder, layer))


if __name__ == "__main__":
    main()
