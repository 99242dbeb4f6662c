"""engine.data: the digits file, naming and split rules, every validation error, batching."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

from engine.data import Dataset, array_names, default_calibration_samples, load_dataset
from engine.errors import FileMissingError, MPQError
from engine.ir import TensorSpec, write_safetensors

X = TensorSpec("x", (32, 1, 8, 8), "float32")
IDS = TensorSpec("input_ids", (32, 16), "int64")
MASK = TensorSpec("attention_mask", (32, 16), "int64")


@pytest.fixture(scope="module")
def arrays(digits) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    z = np.load(digits.npz)
    return z["x"], z["labels"]


def _npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _code(path: Path, specs: tuple[TensorSpec, ...] = (X,), **kwargs: int) -> str:
    with pytest.raises(MPQError) as info:
        load_dataset(path, specs, **kwargs)
    return info.value.code


def _ids(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 30_000, size=(n, 16), dtype=np.int64)


# --- the real digits file and the split rules -------------------------------------------------


def test_digits_npz_calibrates_on_training_images_and_scores_the_held_out(digits, arrays) -> None:  # type: ignore[no-untyped-def]
    from examples.digits import CALIB_SAMPLES, load_split

    x, y = arrays
    ds = load_dataset(digits.npz, [X])
    x_tr, x_te, y_tr, y_te = load_split()
    assert np.array_equal(x, x_te) and np.array_equal(y, y_te)
    assert ds.calibration.num_samples == CALIB_SAMPLES and ds.evaluation.num_samples == 540
    assert torch.equal(ds.evaluation.inputs["x"], torch.from_numpy(x_te))
    assert ds.evaluation.labels is not None and ds.calibration.labels is not None
    assert torch.equal(ds.evaluation.labels, torch.from_numpy(y_te))
    assert torch.equal(ds.calibration.inputs["x"], torch.from_numpy(x_tr[:CALIB_SAMPLES]))
    assert torch.equal(ds.calibration.labels, torch.from_numpy(y_tr[:CALIB_SAMPLES]))
    assert ds.notes == ()


def test_unsplit_file_calibrates_on_every_fourth_sample(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, y = arrays
    ds = load_dataset(_npz(tmp_path / "d.npz", x=x, labels=y), [X])
    assert default_calibration_samples(540) == 135  # min(256, 540 // 4)
    assert ds.calibration.num_samples == 135 and ds.evaluation.num_samples == 405
    # floor(i * 540 / 135) = 4 i: exactly every fourth sample
    assert torch.equal(ds.calibration.inputs["x"], torch.from_numpy(x[::4]))
    assert ds.calibration.labels is not None and ds.evaluation.labels is not None
    assert torch.equal(ds.calibration.labels, torch.from_numpy(y[::4]))
    rest = np.setdiff1d(np.arange(540), np.arange(0, 540, 4))
    assert torch.equal(ds.evaluation.inputs["x"], torch.from_numpy(x[rest]))
    assert torch.equal(ds.evaluation.labels, torch.from_numpy(y[rest]))
    assert ds.evaluation.inputs["x"].dtype == torch.float32
    assert ds.evaluation.labels.dtype == torch.int64
    assert len(ds.notes) == 1 and "135 of its 540 samples" in ds.notes[0]
    assert ds.batch_size == 32


def test_default_calibration_size_is_capped_and_at_least_one() -> None:
    assert [default_calibration_samples(n) for n in (2, 7, 8, 1000, 1024, 10**6)] == [
        1,
        1,
        2,
        250,
        256,
        256,
    ]


def test_calibration_samples_spread_over_a_class_sorted_file(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, y = arrays
    order = np.argsort(y, kind="stable")
    path = _npz(tmp_path / "sorted.npz", x=x[order], labels=y[order])
    ds = load_dataset(path, [X], calibration_samples=50)
    assert ds.calibration.labels is not None and ds.evaluation.labels is not None
    assert ds.calibration.num_samples == 50 and ds.evaluation.num_samples == 490
    assert set(ds.calibration.labels.tolist()) == set(range(10))  # "first 50" would be all 0s
    chosen = [i * 540 // 50 for i in range(50)]
    assert torch.equal(ds.calibration.inputs["x"], torch.from_numpy(x[order][chosen]))
    both = torch.cat([ds.calibration.labels, ds.evaluation.labels]).sort().values
    assert torch.equal(both, torch.from_numpy(np.sort(y)))  # disjoint, and nothing lost


def test_bad_calibration_samples(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, y = arrays
    path = _npz(tmp_path / "d.npz", x=x, labels=y)
    assert _code(path, calibration_samples=0) == "invalid_data"
    assert _code(path, calibration_samples=540) == "invalid_data"
    one = _npz(tmp_path / "one.npz", x=x[:1])
    assert _code(one) == "empty_data"  # cannot split one sample


def test_explicit_splits(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, y = arrays
    path = _npz(tmp_path / "s.npz", x=x, labels=y, **{"calib/x": x[:64], "calib/labels": y[:64]})
    ds = load_dataset(path, [X])
    assert ds.notes == ()
    assert torch.equal(ds.evaluation.inputs["x"], torch.from_numpy(x))
    assert torch.equal(ds.calibration.inputs["x"], torch.from_numpy(x[:64]))
    assert ds.calibration.labels is not None and ds.calibration.labels.shape == (64,)
    ds = load_dataset(path, [X], calibration_samples=10)
    assert ds.calibration.num_samples == 64 and "ignored" in ds.notes[0]
    unlabeled = _npz(tmp_path / "u.npz", x=x, **{"calib/x": x[:8]})
    assert load_dataset(unlabeled, [X]).calibration.labels is None
    only_calib = _npz(tmp_path / "c.npz", **{"calib/x": x})
    assert _code(only_calib) == "missing_inputs"


def test_positional_matching_in_file_order(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, y = arrays
    ds = load_dataset(_npz(tmp_path / "p.npz", arr_0=x, labels=y), [X])  # as np.savez(p, x, ...)
    assert torch.equal(ds.calibration.inputs["x"], torch.from_numpy(x[::4]))
    assert any("arr_0 -> x" in n for n in ds.notes)
    ids, mask = _ids(40), np.ones((40, 16), np.int64)
    # file order, not alphabetical: "zz" was stored first
    path = _npz(tmp_path / "two.npz", zz=ids, aa=mask)
    ds = load_dataset(path, [IDS, MASK])
    assert torch.equal(ds.evaluation.inputs["input_ids"], torch.from_numpy(ids[_rest(40, 10)]))
    assert list(ds.evaluation.inputs) == ["input_ids", "attention_mask"]
    assert "zz -> input_ids, aa -> attention_mask" in ds.notes[0]


def _rest(n: int, k: int) -> list[int]:
    chosen = {i * n // k for i in range(k)}
    return [i for i in range(n) if i not in chosen]


def test_safetensors_recognised_by_content(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, y = arrays
    ref = tmp_path / "ref.npz"  # a safetensors file under a misleading name
    safetensors.numpy.save_file({"x": x, "labels": y}, str(ref))
    ds = load_dataset(ref, [X])
    assert torch.equal(ds.calibration.inputs["x"], torch.from_numpy(x[::4]))
    assert ds.evaluation.labels is not None and ds.evaluation.labels.shape == (405,)
    ours = tmp_path / "ours.safetensors"
    write_safetensors(ours, {"x": torch.from_numpy(x).double(), "calib/x": torch.zeros(4, 1, 8, 8)})
    ds = load_dataset(ours, [X])
    assert ds.evaluation.inputs["x"].dtype == torch.float32  # float64 -> float32
    npz_named = _npz(tmp_path / "data.npz", x=x)
    npz_named.rename(tmp_path / "data.safetensors")
    assert load_dataset(tmp_path / "data.safetensors", [X]).evaluation.num_samples == 405


def test_lossless_integer_casts(tmp_path: Path) -> None:
    ids32 = _ids(8).astype(np.int32)
    path = _npz(tmp_path / "i.npz", input_ids=ids32, attention_mask=np.ones((8, 16), np.uint16))
    ds = load_dataset(path, [IDS, MASK])
    assert ds.evaluation.inputs["input_ids"].dtype == torch.int64
    assert ds.evaluation.inputs["attention_mask"].dtype == torch.int64
    small = TensorSpec("input_ids", (32, 16), "int32")
    path = _npz(tmp_path / "j.npz", input_ids=_ids(8))  # int64 values that fit int32
    assert load_dataset(path, [small]).evaluation.inputs["input_ids"].dtype == torch.int32


# --- validation errors, each with its code ---------------------------------------------------


def test_missing_and_unexpected_arrays(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, y = arrays
    with pytest.raises(MPQError, match=r"expected \['x'\].*found \['images', 'pixels'\]") as info:
        load_dataset(_npz(tmp_path / "a.npz", images=x, pixels=x), [X])
    assert info.value.code == "missing_inputs"
    partial = _npz(tmp_path / "b.npz", input_ids=_ids(8), mask=np.ones((8, 16), np.int64))
    assert _code(partial, (IDS, MASK)) == "missing_inputs"  # no mixing of name and position
    with pytest.raises(MPQError, match=r"\['label'\]") as info:
        load_dataset(_npz(tmp_path / "c.npz", x=x, label=y), [X])
    assert info.value.code == "unexpected_arrays"


@pytest.mark.parametrize(
    ("spec", "array"),
    [
        (X, np.zeros((4, 1, 8, 8), np.uint8)),  # integer data for a float input
        (IDS, np.zeros((4, 16), np.float32)),  # float data for an integer input
        (IDS, np.zeros((4, 16), np.bool_)),
        (X, np.zeros((4, 1, 8, 8), np.complex64)),
        (X, np.array([["a"] * 16] * 4).reshape(4, 1, 4, 4)),
        (TensorSpec("input_ids", (32, 2), "int32"), np.array([[0, 2**31]] * 4)),  # out of range
    ],
)
def test_wrong_dtype(tmp_path: Path, spec: TensorSpec, array: np.ndarray) -> None:
    assert _code(_npz(tmp_path / "d.npz", **{spec.name: array}), (spec,)) == "data_dtype"


def test_wrong_shape(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, _ = arrays
    with pytest.raises(
        MPQError, match=r"\(540, 64\).*\('N', 1, 8, 8\).*reshape\(-1, 1, 8, 8\)"
    ) as info:
        load_dataset(_npz(tmp_path / "a.npz", x=x.reshape(540, 64)), [X])
    assert info.value.code == "data_shape"
    assert _code(_npz(tmp_path / "b.npz", x=np.zeros((9, 1, 8, 9), np.float32))) == "data_shape"


def test_inconsistent_sample_counts(tmp_path: Path) -> None:
    path = _npz(tmp_path / "a.npz", input_ids=_ids(10), attention_mask=np.ones((9, 16), np.int64))
    assert _code(path, (IDS, MASK)) == "sample_count_mismatch"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e300])
def test_non_finite_inputs(tmp_path: Path, arrays, bad: float) -> None:  # type: ignore[no-untyped-def]
    x = arrays[0].astype(np.float64)
    x[7, 0, 3, 3] = bad
    with pytest.raises(MPQError, match="first in sample 7") as info:
        load_dataset(_npz(tmp_path / "a.npz", x=x), [X])
    assert info.value.code == "non_finite_data"
    assert ("overflow" in str(info.value)) == (bad == 1e300)  # finite float64, inf as float32


def test_non_finite_in_a_one_dimensional_input(tmp_path: Path) -> None:
    v = np.zeros(10, np.float32)
    v[3] = np.nan
    path = _npz(tmp_path / "v.npz", v=v)
    with pytest.raises(MPQError, match="first in sample 3") as info:
        load_dataset(path, [TensorSpec("v", (32,), "float32")])
    assert info.value.code == "non_finite_data"


def test_empty(tmp_path: Path) -> None:
    assert _code(_npz(tmp_path / "a.npz", x=np.zeros((0, 1, 8, 8), np.float32))) == "empty_data"
    assert _code(_npz(tmp_path / "b.npz")) == "empty_data"  # no arrays at all
    (tmp_path / "c.npz").write_bytes(b"")
    assert _code(tmp_path / "c.npz") == "empty_data"


def test_over_max_bytes(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, _ = arrays
    path = _npz(tmp_path / "a.npz", x=x)
    assert _code(path, max_bytes=x.nbytes // 2) == "data_too_large"
    zeros = tmp_path / "z.npz"  # small on disk, large unpacked
    np.savez_compressed(zeros, x=np.zeros((4096, 1, 8, 8), np.float32))
    limit = 4096 * 64 * 4 - 1
    assert zeros.stat().st_size < limit
    with pytest.raises(MPQError, match="unpacks to") as info:
        load_dataset(zeros, [X], max_bytes=limit)
    assert info.value.code == "data_too_large"


@pytest.mark.parametrize(
    "labels",
    [np.arange(539), np.full(540, -1), np.zeros(540, np.float32), np.zeros((540, 1), np.int64)],
)
def test_bad_labels(tmp_path: Path, arrays, labels: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    x, _ = arrays
    assert _code(_npz(tmp_path / "a.npz", x=x, labels=labels)) == "invalid_labels"


class _Touch:
    """Unpickling this runs ``Path.touch(marker)``: a harmless stand-in for hostile code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_object_array_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    obj = np.empty(1, dtype=object)
    obj[0] = _Touch(marker)
    buf = io.BytesIO()
    np.save(buf, obj, allow_pickle=True)
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", buf.getvalue())
    with pytest.raises(MPQError) as info:
        load_dataset(path, [X])
    assert info.value.code == "pickled_data"
    assert not marker.exists()
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(path, allow_pickle=False)["x"]
    assert not marker.exists()
    np.load(path, allow_pickle=True)["x"]  # the payload is real: pickle runs it
    assert marker.exists()


def test_unsupported_formats(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, _ = arrays
    np.save(tmp_path / "a.npy", x)
    (tmp_path / "b.txt").write_text("x,y\n1,2\n")
    (tmp_path / "c.pkl").write_bytes(pickle.dumps({"x": x}))
    torch.save({"x": torch.from_numpy(x)}, tmp_path / "d.pt")  # a zip holding data.pkl
    for name in ("a.npy", "b.txt", "c.pkl", "d.pt"):
        assert _code(tmp_path / name) == "unsupported_data_format", name


def test_corrupt_files(tmp_path: Path, arrays) -> None:  # type: ignore[no-untyped-def]
    x, _ = arrays
    whole = _npz(tmp_path / "a.npz", x=x).read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    assert _code(tmp_path / "cut.npz") == "corrupt_file"
    header = io.BytesIO()  # a .npy header claiming 10^12 floats, followed by 64 bytes
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
    )
    with zipfile.ZipFile(tmp_path / "liar.npz", "w") as zf:
        zf.writestr("x.npy", header.getvalue() + bytes(64))
    with pytest.raises(MPQError, match="declares shape") as info:
        load_dataset(tmp_path / "liar.npz", [X])
    assert info.value.code == "corrupt_file"
    (tmp_path / "e.safetensors").write_bytes((10**6).to_bytes(8, "little") + b"{}")
    assert _code(tmp_path / "e.safetensors") == "corrupt_file"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileMissingError):
        load_dataset(tmp_path / "nope.npz", [X])


# --- batching for static-shape models --------------------------------------------------------


@pytest.fixture
def full(tmp_path: Path, arrays) -> Dataset:  # type: ignore[no-untyped-def]
    """All 540 digits as the evaluation split (explicit calibration split)."""
    x, y = arrays
    return load_dataset(_npz(tmp_path / "f.npz", x=x, labels=y, **{"calib/x": x[:64]}), [X])


def test_last_batch_is_padded_by_repeating_rows(full: Dataset, arrays) -> None:  # type: ignore[no-untyped-def]
    x, y = arrays
    batches = list(full.batches("evaluation"))
    assert len(batches) == 17  # 540 = 16 * 32 + 28
    assert all(b.tensors[0].shape == (32, 1, 8, 8) for b in batches)
    assert [b.n_valid for b in batches] == [32] * 16 + [28]
    assert [b.start for b in batches] == list(range(0, 540, 32))
    last = batches[-1].tensors[0]
    assert torch.equal(last[:28], torch.from_numpy(x[512:]))
    assert torch.equal(last[28:], torch.from_numpy(x[512:516]))  # rows j -> j mod 28
    assert batches[-1].labels is not None and batches[-1].labels.shape == (28,)
    back = torch.cat([b.unpad(b.tensors[0]) for b in batches])
    assert torch.equal(back, torch.from_numpy(x))
    labels = torch.cat([b.labels for b in batches if b.labels is not None])
    assert torch.equal(labels, torch.from_numpy(y))


def test_batch_size_override_and_misuse(full: Dataset) -> None:
    sizes = [b.n_valid for b in full.batches("evaluation", 100)]
    assert sizes == [100] * 5 + [40]
    assert [b.tensors[0].shape[0] for b in full.batches("calibration", 100)] == [100]
    assert [b.n_valid for b in full.batches("calibration", 100)] == [64]
    with pytest.raises(ValueError, match="batch_size"):
        next(full.batches("evaluation", 0))
    with pytest.raises(ValueError, match="split"):
        next(full.batches("train"))  # type: ignore[arg-type]


def test_array_names_read_no_data(tmp_path: Path) -> None:
    x, y = np.zeros((4, 3), np.float32), np.arange(4)
    np.savez(tmp_path / "a.npz", x=x, labels=y, **{"calib/x": x})
    assert array_names(tmp_path / "a.npz") == ("x", "labels", "calib/x")
    safetensors.numpy.save_file({"x": x}, str(tmp_path / "b.safetensors"), metadata={"k": "v"})
    assert array_names(tmp_path / "b.safetensors") == ("x",)
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "d.bin").write_bytes(b"\x01")
    for bad in ("c.npz", "d.bin"):
        with pytest.raises(MPQError) as info:
            array_names(tmp_path / bad)
        assert info.value.code == "corrupt_file"
