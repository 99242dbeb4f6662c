"""Evaluation and calibration datasets: safe loading, validation, static-shape batching.

Files are read by :func:`engine.data.read_arrays` (``.npz`` or
safetensors, recognised by their bytes, never unpickled).

Array naming:

- ``<input>`` arrays hold the **evaluation** split, ``calib/<input>`` arrays the
  **calibration** split; ``labels`` and ``calib/labels`` are the optional labels
  (1-D non-negative integers, one per sample). ``labels`` is reserved.
- Within a split, arrays match model inputs by name when every input name is
  present; any other array is refused (a typo such as ``label`` would otherwise
  be silently ignored). When no input name is present and the number of arrays
  equals the number of inputs, they match by position in file order (the order
  given to ``np.savez``; safetensors writers sort by name); a note says so.
- Without ``calib/`` arrays, calibration samples are taken from the file:
  ``k = calibration_samples`` or ``max(1, min(256, n // 4))`` samples at indices
  ``floor(i * n / k)`` for ``i < k`` (evenly spread, so a file sorted by class
  still gives every class), and evaluation is the other ``n - k``; a note says so.

Dtypes (the model input's dtype decides): floating inputs need floating data,
cast to the input's dtype (float64 -> float32 rounds, as the model would);
integer inputs need integer data, cast when every value fits the target (int32
-> int64 always, int64 -> int32 when in range); bool inputs need bool data.
Float data must be finite after the cast.

Size: one file (over 300 lines): the split and batch types, and the validation of an
uploaded file against the model's inputs (names, shapes, dtypes, labels) they are
built by; the error messages of every rule live next to the rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from engine.data._files import read_arrays
from engine.errors import (
    DataDtypeError,
    DataShapeError,
    EmptyDataError,
    FileMissingError,
    InvalidDataError,
    InvalidLabelsError,
    MissingInputsError,
    NonFiniteDataError,
    SampleCountError,
    UnexpectedArraysError,
)
from engine.ir import DType, TensorSpec

__all__ = [
    "CALIB_PREFIX",
    "LABELS",
    "Batch",
    "Dataset",
    "Split",
    "SplitName",
    "default_calibration_samples",
    "load_dataset",
]

CALIB_PREFIX = "calib/"
LABELS = "labels"
MAX_CALIBRATION = 256
SplitName = Literal["calibration", "evaluation"]


@dataclass(frozen=True)
class Split:
    """One split: ``inputs`` in model-input order (name -> [n, ...]) and labels [n] or None."""

    inputs: Mapping[str, torch.Tensor]
    labels: torch.Tensor | None

    @property
    def num_samples(self) -> int:
        """``n``, the first dimension shared by every array of the split."""
        return int(next(iter(self.inputs.values())).shape[0])

    def tensors(self) -> list[torch.Tensor]:
        """The input tensors in model-input order."""
        return list(self.inputs.values())

    def select(self, index: torch.Tensor) -> Split:
        """The samples at ``index`` (int64 [k]), in that order."""
        labels = None if self.labels is None else self.labels.index_select(0, index)
        return Split({k: v.index_select(0, index) for k, v in self.inputs.items()}, labels)


@dataclass(frozen=True)
class Batch:
    """``tensors`` hold exactly ``batch_size`` rows; only the first ``n_valid`` are real.

    The rest repeat the batch's real rows cyclically (row ``j`` is real row
    ``j mod n_valid``): real data keeps padded rows well-formed (an all-zero
    attention mask would give NaN), and eval-mode models treat rows
    independently, so padding cannot change the real rows' outputs.
    """

    tensors: list[torch.Tensor]
    n_valid: int
    start: int
    labels: torch.Tensor | None
    """Labels of the real rows only ([n_valid]), or None."""

    def unpad(self, output: torch.Tensor) -> torch.Tensor:
        """``output[:n_valid]``: drop the rows computed on padding."""
        return output[: self.n_valid]


@dataclass(frozen=True)
class Dataset:
    """A validated dataset for a model with inputs ``inputs``; ``notes`` explain choices made."""

    inputs: tuple[TensorSpec, ...]
    calibration: Split
    evaluation: Split
    notes: tuple[str, ...] = ()

    @property
    def batch_size(self) -> int:
        """The model's static batch size: the first dimension of its first input."""
        return self.inputs[0].shape[0]

    def split(self, name: SplitName) -> Split:
        """The split called ``name`` (``"calibration"`` or ``"evaluation"``)."""
        if name not in ("calibration", "evaluation"):
            raise ValueError(f"split must be 'calibration' or 'evaluation', not {name!r}")
        return self.calibration if name == "calibration" else self.evaluation

    def batches(self, split: SplitName, batch_size: int | None = None) -> Iterator[Batch]:
        """Batches of exactly ``batch_size`` rows (default :attr:`batch_size`), in order.

        ``ceil(n / batch_size)`` batches; the last is padded (see :class:`Batch`).
        """
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        part = self.split(split)
        tensors, n = part.tensors(), part.num_samples
        for start in range(0, n, size):
            n_valid = min(size, n - start)
            if n_valid == size:
                rows = [t[start : start + size] for t in tensors]
            else:
                index = start + torch.arange(size) % n_valid
                rows = [t.index_select(0, index) for t in tensors]
            labels = None if part.labels is None else part.labels[start : start + n_valid]
            yield Batch(rows, n_valid, start, labels)


def default_calibration_samples(n: int) -> int:
    """``max(1, min(256, n // 4))``: calibration samples taken from an unsplit file of ``n``."""
    return max(1, min(MAX_CALIBRATION, n // 4))


def load_dataset(
    path: Path,
    inputs: Sequence[TensorSpec],
    *,
    calibration_samples: int | None = None,
    max_bytes: int = 2 * 1024**3,
    hold_out_calibration: bool = True,
    name: str | None = None,
) -> Dataset:
    """Load and validate the data file at ``path`` for a model whose inputs are ``inputs``.

    See the module docstring for formats, naming, splitting and casting rules.
    ``calibration_samples`` (``1 <= k < n``) applies only to files without
    ``calib/`` arrays. ``max_bytes`` caps the file size and the bytes its arrays declare
    (checked before anything is decompressed). ``name`` is how messages call the file
    (the name the user gave an upload); ``path.name`` when ``None``.
    ``hold_out_calibration=False`` is for callers that calibrate nothing (scoring a
    ``model.mpq`` or a float model): the evaluation split is then every sample of a file
    without ``calib/`` arrays (its calibration split, still drawn as above, overlaps it).

    Raises:
        FileMissingError, DataFormatError, CorruptFileError, PickledDataError,
        DataTooLargeError, EmptyDataError, MissingInputsError, UnexpectedArraysError,
        DataDtypeError, DataShapeError, SampleCountError, NonFiniteDataError,
        InvalidLabelsError, InvalidDataError (a bad ``calibration_samples``).
    """
    path, specs = Path(path), tuple(inputs)
    if not specs:
        raise ValueError("the model has no inputs")
    if not path.is_file():
        raise FileMissingError(f"data file {str(path)!r} does not exist or is not a file")
    arrays = read_arrays(path, max_bytes, name=name)
    file = path.name if name is None else name
    if not arrays:
        raise EmptyDataError(f"{file!r} holds no arrays; save one array per model input")
    notes: list[str] = []
    calib = {
        k.removeprefix(CALIB_PREFIX): v for k, v in arrays.items() if k.startswith(CALIB_PREFIX)
    }
    evaluation = _build_split(
        file, {k: v for k, v in arrays.items() if not k.startswith(CALIB_PREFIX)}, specs, "", notes
    )
    if calib:
        calibration = _build_split(file, calib, specs, CALIB_PREFIX, notes)
        if calibration_samples is not None:
            notes.append(f"calibration_samples={calibration_samples} ignored: file has calib/")
        return Dataset(specs, calibration, evaluation, tuple(notes))
    n = evaluation.num_samples
    k = default_calibration_samples(n) if calibration_samples is None else calibration_samples
    if n < 2:
        raise EmptyDataError(
            f"{file!r} has {n} sample; splitting it into calibration and evaluation needs at "
            f"least 2. Add samples, or give explicit {CALIB_PREFIX}<input> arrays"
        )
    if not 1 <= k < n:
        raise InvalidDataError(
            f"calibration_samples={k}, but {file!r} has {n} samples; choose 1..{n - 1} "
            f"so both splits keep samples, or give explicit {CALIB_PREFIX}<input> arrays"
        )
    chosen = torch.tensor([i * n // k for i in range(k)], dtype=torch.int64)
    if not hold_out_calibration:
        notes.append(
            f"{file!r} has no {CALIB_PREFIX} arrays and nothing is calibrated: all {n} of its "
            "samples are evaluated"
        )
        return Dataset(specs, evaluation.select(chosen), evaluation, tuple(notes))
    mask = torch.ones(n, dtype=torch.bool)
    mask[chosen] = False
    notes.append(
        f"{file!r} has no {CALIB_PREFIX} arrays: calibration = {k} of its {n} samples, evenly "
        f"spread (indices floor(i*{n}/{k}), i < {k}); evaluation = the other {n - k}"
    )
    return Dataset(
        specs,
        evaluation.select(chosen),
        evaluation.select(torch.nonzero(mask).flatten()),
        tuple(notes),
    )


def _build_split(
    file: str,
    arrays: Mapping[str, torch.Tensor],
    specs: tuple[TensorSpec, ...],
    prefix: str,
    notes: list[str],
) -> Split:
    data = {k: v for k, v in arrays.items() if k != LABELS}
    wanted = [s.name for s in specs]
    expected = [prefix + w for w in wanted]
    found = [prefix + k for k in data]
    if data and all(w in data for w in wanted):
        extra = [prefix + k for k in data if k not in wanted]
        if extra:
            raise UnexpectedArraysError(
                f"{file!r} holds arrays {extra} that match no model input; expected "
                f"{expected} plus optional {prefix}{LABELS}. Remove or rename them"
            )
        pairs = [(w, data[w]) for w in wanted]
    elif data and not any(w in data for w in wanted) and len(data) == len(wanted):
        pairs = list(data.items())
        names = ", ".join(f"{prefix}{k} -> {w}" for (k, _), w in zip(pairs, wanted, strict=True))
        notes.append(
            f"{file!r}: no array is named after a model input; matched by position: {names}"
        )
    else:
        missing = [prefix + w for w in wanted if w not in data]
        raise MissingInputsError(
            f"{file!r} lacks arrays {missing} for model inputs; expected {expected} "
            f"(by name, or {len(wanted)} arrays by position), found {found}"
        )
    tensors = {
        s.name: _conform(file, prefix + k, t, s) for (k, t), s in zip(pairs, specs, strict=True)
    }
    counts = {
        prefix + k: int(t.shape[0]) for (k, _), t in zip(pairs, tensors.values(), strict=True)
    }
    if len(set(counts.values())) > 1:
        raise SampleCountError(
            f"{file!r}: arrays disagree on the number of samples (first dimension): {counts}. "
            "Every input array of a split needs one row per sample"
        )
    n = next(iter(counts.values()))
    if n == 0:
        raise EmptyDataError(f"{file!r}: arrays {found} have 0 samples; provide at least one")
    labels = arrays.get(LABELS)
    return Split(tensors, None if labels is None else _labels(file, prefix + LABELS, labels, n))


def _conform(file: str, name: str, t: torch.Tensor, spec: TensorSpec) -> torch.Tensor:
    """Check ``t`` against ``spec`` (dtype kind, per-sample shape), cast it, check finiteness."""
    target = DType(spec.dtype).torch
    what = f"{file!r}: array {name!r}" + (
        f" (model input {spec.name!r})" if name != spec.name else ""
    )
    if target.is_floating_point:
        ok, need = t.is_floating_point(), "floating point (e.g. x.astype(np.float32))"
    elif target == torch.bool:
        ok, need = t.dtype == torch.bool, "bool"
    else:
        ok = not t.is_floating_point() and not t.is_complex() and t.dtype != torch.bool
        need = "integer (e.g. x.astype(np.int64))"
    if not ok:
        raise DataDtypeError(
            f"{what} has dtype {t.dtype}; the model input is {spec.dtype}, so it must be {need}"
        )
    if not spec.shape:
        raise DataShapeError(f"model input {spec.name!r} is a scalar; MPQ needs a batch dimension")
    if t.ndim != len(spec.shape) or tuple(t.shape[1:]) != spec.shape[1:]:
        raise DataShapeError(
            f"{what} has shape {tuple(t.shape)}; the model input needs {('N', *spec.shape[1:])} "
            f"(N samples of shape {spec.shape[1:]}). Reshape it, e.g. "
            f"x.reshape{(-1, *spec.shape[1:])}"
        )
    if not target.is_floating_point and target != torch.bool and t.dtype != target and t.numel():
        lo, hi, info = int(t.min()), int(t.max()), torch.iinfo(target)
        if lo < info.min or hi > info.max:
            raise DataDtypeError(
                f"{what} ({t.dtype}) holds values in [{lo}, {hi}], which do not fit the model "
                f"input's {spec.dtype} [{info.min}, {info.max}]; fix the values"
            )
    out = t.to(target).contiguous()
    if target.is_floating_point:
        bad = ~torch.isfinite(out)
        if bool(bad.any()):
            first = int(torch.nonzero(bad.reshape(len(bad), -1).any(1))[0])
            cause = (
                f"overflow when cast from {t.dtype} to {spec.dtype}"
                if bool(torch.isfinite(t).all())
                else "NaN or infinity"
            )
            raise NonFiniteDataError(
                f"{what} has {int(bad.sum())} non-finite values ({cause}), first in sample "
                f"{first}; replace or drop those samples (e.g. np.nan_to_num) and upload again"
            )
    return out


def _labels(file: str, name: str, t: torch.Tensor, n: int) -> torch.Tensor:
    """Validate labels: integer, shape [n], every value >= 0; return them as int64."""
    where = f"{file!r}: {name!r}"
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise InvalidLabelsError(
            f"{where} has dtype {t.dtype}; labels must be integer class indices "
            "(e.g. y.astype(np.int64))"
        )
    if tuple(t.shape) != (n,):
        raise InvalidLabelsError(
            f"{where} has shape {tuple(t.shape)}; labels must be 1-D with one entry per "
            f"sample, i.e. shape ({n},)"
        )
    if n and int(t.min()) < 0:
        first = int(torch.nonzero(t < 0)[0])
        raise InvalidLabelsError(
            f"{where} holds negative labels (first at sample {first}: {int(t[first])}); "
            "labels must be class indices >= 0"
        )
    return t.to(torch.int64).contiguous()
