"""Train the example CNN on scikit-learn's digits and export it.

Writes ``digits.pt2`` (a ``torch.export`` archive) and ``digits.onnx`` exported at a
batch of 32, ``digits_dynamic.pt2`` and ``digits_dynamic.onnx`` exported with a
dynamic batch (``dynamic_shapes`` / ``dynamic_axes``), and ``digits.npz`` into the
output directory. The data file holds the held-out split
as the evaluation data (``x`` float32 [N, 1, 8, 8], ``labels`` int64 [N]) and
``CALIB_SAMPLES`` training images as the calibration data (``calib/x``,
``calib/labels``), so quantization never calibrates on what it is scored on.
Deterministic: fixed seed, one thread.

Usage: ``python examples/digits.py --out DIR``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

CALIB_SAMPLES = 256


class DigitsCNN(nn.Module):
    """Conv+BN+ReLU x3, pooling, Linear: 8x8 grey digits -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int, *, groups: int = 1) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False, groups=groups),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]

        self.features = nn.Sequential(
            *block(1, 16),
            nn.MaxPool2d(2),
            *block(16, 32),
            *block(32, 32, groups=32),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(torch.flatten(self.features(x), 1))
        return out


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits as float32 in [0, 1], shape [N, 1, 8, 8]; the issue's fixed split."""
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return x_tr, x_te, y_tr, y_te


def train(*, epochs: int = 30, seed: int = 0) -> DigitsCNN:
    """Train with Adam on the training split; return the eval-mode model."""
    torch.manual_seed(seed)
    x_tr, _, y_tr, _ = load_split()
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 64):
            idx = order[start : start + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = train(epochs=args.epochs)
    x_tr, x_te, y_tr, y_te = load_split()
    with torch.no_grad():
        acc = (model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean()
    args.out.mkdir(parents=True, exist_ok=True)
    example = (torch.from_numpy(x_te[:32]),)
    torch.export.save(torch.export.export(model, example), args.out / "digits.pt2")
    torch.onnx.export(model, example, args.out / "digits.onnx", dynamo=False, input_names=["x"])
    # the same model with a dynamic batch, the way it is usually exported
    batch = ({0: torch.export.Dim("batch")},)
    program = torch.export.export(model, example, dynamic_shapes=batch)
    torch.export.save(program, args.out / "digits_dynamic.pt2")
    torch.onnx.export(
        model,
        example,
        args.out / "digits_dynamic.onnx",
        dynamo=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
    )
    arrays = {
        "x": x_te,
        "labels": y_te,
        "calib/x": x_tr[:CALIB_SAMPLES],
        "calib/labels": y_tr[:CALIB_SAMPLES],
    }
    np.savez(args.out / "digits.npz", **arrays)  # type: ignore[arg-type]
    print(f"digits CNN: held-out top-1 {acc:.4f} on {len(y_te)} samples -> {args.out}")


if __name__ == "__main__":
    main()
