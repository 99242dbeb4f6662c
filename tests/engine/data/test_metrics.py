"""engine.data metrics: hand-computed values, independent references, properties, a real CNN."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score

from engine.data import (
    METRICS,
    accuracy,
    agreement,
    check_metric,
    cosine,
    evaluate,
    kl_divergence,
    load_dataset,
    nmse,
    related_metrics,
    sqnr,
    top5,
)
from engine.errors import MPQError
from engine.io.importers import exported_program_to_ir
from engine.ir import TensorSpec, to_graph_module


def _logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- accuracy / agreement ---------------------------------------------------------------------


def test_accuracy_by_hand() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
    assert accuracy(logits, torch.tensor([0, 1, 2, 2])) == 0.75
    assert accuracy(torch.tensor([[1.0, 1.0]]), torch.tensor([0])) == 1.0  # tie: lowest index
    per_token = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])  # [N=2, T=2, C]
    assert accuracy(per_token, torch.tensor([[0, 1], [1, 0]])) == 0.75


def test_accuracy_matches_sklearn() -> None:
    for seed in range(5):
        logits = _logits(257, 10, seed=seed)
        labels = torch.randint(0, 10, (257,), generator=torch.Generator().manual_seed(seed))
        ref = accuracy_score(labels.numpy(), logits.argmax(1).numpy())
        assert accuracy(logits, labels) == ref


def test_accuracy_refuses_labels_that_do_not_fit() -> None:
    logits = _logits(4, 3)
    for labels in (torch.tensor([0, 1, 3, 0]), torch.tensor([0, -1, 0, 0]), torch.zeros(5)):
        with pytest.raises(MPQError) as info:
            accuracy(logits, labels.long())
        assert info.value.code == "invalid_labels"


def test_agreement_by_hand_and_properties() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [3.0, 1.0], [0.0, 5.0], [0.0, 1.0]])
    assert agreement(a, b) == 0.5
    x, y = _logits(100, 7), _logits(100, 7, seed=1)
    assert agreement(x, x) == 1.0
    assert agreement(x, y) == agreement(y, x)
    assert agreement(x, y) == accuracy(x, y.argmax(1))  # agreement = accuracy vs ref's top-1
    assert agreement(x, 3.0 * x + 1.0) == 1.0  # argmax survives positive scaling and shifts


# --- cosine -----------------------------------------------------------------------------------


def test_cosine_by_hand() -> None:
    assert cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])) == 0.0  # orthogonal
    assert cosine(torch.tensor([[1.0, 2.0]]), torch.tensor([[-2.0, -4.0]])) == pytest.approx(-1)
    assert cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])) == pytest.approx(
        1 / math.sqrt(2), abs=1e-15
    )
    # mean over samples: (1 + 0) / 2
    assert (
        cosine(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
        == 0.5
    )
    zeros = torch.zeros(1, 3)
    assert cosine(zeros, zeros) == 1.0 and cosine(zeros, torch.ones(1, 3)) == 0.0


def test_cosine_matches_torch_on_flattened_samples() -> None:
    out, ref = _logits(64, 3, 4, 4), _logits(64, 3, 4, 4, seed=1)
    expected = F.cosine_similarity(out.flatten(1).double(), ref.flatten(1).double(), dim=1).mean()
    assert cosine(out, ref) == pytest.approx(float(expected), abs=1e-12)


def test_cosine_properties() -> None:
    out = _logits(50, 384).double()  # float64: scaling a float32 tensor would round
    ref = out + 0.5 * _logits(50, 384, seed=1).double()
    scale = torch.rand(50, 1, generator=torch.Generator().manual_seed(2)).double() * 10 + 0.1
    assert cosine(out * scale, ref) == pytest.approx(cosine(out, ref), abs=1e-12)
    assert cosine(out, ref * 7.0) == pytest.approx(cosine(out, ref), abs=1e-12)
    assert cosine(out, out) == pytest.approx(1.0, abs=1e-12)
    assert 0.8 < cosine(out, ref) < 0.95  # correlated, so the checks above are not about ~0
    assert cosine(out, ref) == pytest.approx(cosine(ref, out), abs=1e-15)


# --- sqnr -------------------------------------------------------------------------------------


def test_sqnr_by_hand() -> None:
    ref = torch.tensor([[3.0, 4.0]])  # signal 25
    assert sqnr(torch.tensor([[3.0, 5.0]]), ref) == pytest.approx(10 * math.log10(25))  # noise 1
    assert sqnr(torch.ones(10, 100) * 1.1, torch.ones(10, 100)) == pytest.approx(20.0)
    assert sqnr(ref, ref) == math.inf
    assert sqnr(torch.ones(1, 2), torch.zeros(1, 2)) == -math.inf


def test_sqnr_matches_numpy_and_scales() -> None:
    ref = _logits(32, 10)
    out = ref + 0.01 * _logits(32, 10, seed=1)
    r, o = ref.double().numpy(), out.double().numpy()
    expected = 10 * np.log10((r**2).sum() / ((o - r) ** 2).sum())
    assert sqnr(out, ref) == pytest.approx(expected, abs=1e-9)
    assert sqnr(4 * out, 4 * ref) == pytest.approx(expected, abs=1e-9)  # scale invariant
    halved = ref + 0.5 * (out - ref)  # half the error: +20 log10(2) dB
    assert sqnr(halved, ref) == pytest.approx(expected + 20 * math.log10(2), abs=1e-5)


# --- KL divergence ----------------------------------------------------------------------------


def test_kl_by_hand() -> None:
    # q = softmax([0, 0]) = (1/2, 1/2); s = softmax([ln 3, 0]) = (3/4, 1/4)
    got = kl_divergence(torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([[0.0, 0.0]]))
    assert got == pytest.approx(0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25))
    x = _logits(16, 10)
    assert kl_divergence(x, x) == 0.0
    assert kl_divergence(x + 5.0, x) == pytest.approx(0.0, abs=1e-12)  # softmax ignores shifts


def test_kl_matches_torch_kl_div() -> None:
    out, ref = _logits(128, 10), _logits(128, 10, seed=1)
    expected = F.kl_div(
        F.log_softmax(out.double(), 1),
        F.log_softmax(ref.double(), 1),
        reduction="batchmean",
        log_target=True,
    )
    assert kl_divergence(out, ref) == pytest.approx(float(expected), abs=1e-12)
    assert kl_divergence(out, ref) != pytest.approx(kl_divergence(ref, out))  # not symmetric


def test_kl_is_stable_for_large_logits() -> None:
    ref = torch.tensor([[1000.0, 0.0, -1000.0]])
    out = torch.tensor([[0.0, 1000.0, -1000.0]])
    got = kl_divergence(out, ref)  # q is one-hot on class 0, where log s = -1000
    assert math.isfinite(got) and got == pytest.approx(1000.0)


def test_kl_properties() -> None:
    gen = torch.Generator().manual_seed(3)
    for seed in range(5):
        out, ref = _logits(64, 3, 12, seed=seed), _logits(64, 3, 12, seed=seed + 10)
        assert kl_divergence(out, ref) > 0.1  # >= 0, and far from 0 for unrelated logits
        near = ref + 0.01 * torch.randn(ref.shape, generator=gen)
        assert 0 <= kl_divergence(near, ref) < 1e-3 < kl_divergence(out, ref)


# --- top5 -------------------------------------------------------------------------------------


def test_top5_by_hand() -> None:
    ref = torch.tensor([[0.0, 0, 0, 0, 0, 0, 9.0]] * 3)  # float top-1: class 6 everywhere
    out = torch.tensor(
        [
            [6.0, 5, 4, 3, 2, 1, 0],  # class 6 ranks 7th: miss
            [6.0, 5, 4, 3, 1, 0, 2],  # class 6 ranks 5th: hit
            [1.0, 1, 1, 1, 1, 1, 1],  # all tied: six lower indices rank first, miss
        ]
    )
    assert top5(out, ref) == pytest.approx(1 / 3)
    tied = torch.tensor([[1.0, 1, 1, 1, 1, 1]])
    assert top5(tied, torch.tensor([[0.0, 0, 0, 0, 1, 0]])) == 1.0  # class 4: rank 4, a hit
    assert top5(tied, torch.tensor([[0.0, 0, 0, 0, 0, 1]])) == 0.0  # class 5: rank 5, a miss
    per_token = torch.stack([out, out])  # [N=2, T=3, C=7]: mean over every position
    assert top5(per_token, torch.stack([ref, ref])) == pytest.approx(1 / 3)


def test_top5_matches_numpy_and_properties() -> None:
    for seed in range(5):
        out, ref = _logits(300, 12, seed=seed), _logits(300, 12, seed=seed + 10)
        r = ref.numpy().argmax(1)
        order = np.argsort(-out.numpy(), axis=1, kind="stable")  # ties: lower index first
        expected = np.mean([r[i] in order[i, :5] for i in range(300)])
        assert top5(out, ref) == pytest.approx(expected, abs=1e-15)
        assert 0.3 < top5(out, ref) < 0.55  # about 5/12 for unrelated logits
        assert top5(out, ref) >= agreement(out, ref)
        assert top5(out, out) == 1.0 and top5(2.0 * out - 1.0, out) == 1.0


def test_top5_needs_five_classes() -> None:
    with pytest.raises(MPQError) as info:
        top5(_logits(8, 4), _logits(8, 4, seed=1))
    assert info.value.code == "metric_not_applicable" and "at least 5 classes" in str(info.value)


# --- nmse -------------------------------------------------------------------------------------


def test_nmse_by_hand_and_zero_rule() -> None:
    ref = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # |y|^2 = 25, 1
    out = torch.tensor([[3.0, 5.0], [0.0, 0.0]])  # |y_q - y|^2 = 1, 1
    assert nmse(out, ref) == pytest.approx((1 / 25 + 1 / 1) / 2)
    zeros = torch.zeros(1, 3)
    assert nmse(zeros, zeros) == 0.0  # a zero reference, matched: identical
    assert nmse(torch.ones(1, 3), zeros) == 1.0  # a zero reference, missed: counts 1
    x = _logits(16, 8)
    assert nmse(x, x) == 0.0


def test_nmse_matches_numpy_and_properties() -> None:
    ref = _logits(40, 3, 5)
    out = ref + 0.1 * _logits(40, 3, 5, seed=1)
    r, o = ref.double().numpy().reshape(40, -1), out.double().numpy().reshape(40, -1)
    expected = np.mean(((o - r) ** 2).sum(1) / (r**2).sum(1))
    assert nmse(out, ref) == pytest.approx(expected, rel=1e-12)
    assert 0.005 < nmse(out, ref) < 0.02  # about 0.1^2
    assert nmse(3.0 * out, 3.0 * ref) == pytest.approx(nmse(out, ref), rel=1e-6)  # scale-free
    halved = ref + 0.5 * (out - ref)
    assert nmse(halved, ref) == pytest.approx(nmse(out, ref) / 4, rel=1e-5)
    assert nmse(out, ref) != pytest.approx(nmse(ref, out), rel=1e-6)  # not symmetric


# --- the table --------------------------------------------------------------------------------


def test_metric_table() -> None:
    assert list(METRICS) == ["accuracy", "agreement", "top5", "kl", "cosine", "nmse", "sqnr"]
    assert [n for n, m in METRICS.items() if m.needs_labels] == ["accuracy"]
    assert [n for n, m in METRICS.items() if not m.higher_is_better] == ["kl", "nmse"]
    x = _logits(8, 6)
    assert METRICS["agreement"].fn(x, x) == 1.0
    assert METRICS["accuracy"].fn(x, x.argmax(1)) == 1.0
    assert METRICS["kl"].fn(x, x) == 0.0 and METRICS["nmse"].fn(x, x) == 0.0


def test_per_sample_values_average_to_the_metric() -> None:
    out, ref = _logits(20, 4, 7), _logits(20, 4, 7, seed=1)
    labels = ref.argmax(-1)
    for name, info in METRICS.items():
        if info.per_sample is None:
            assert name == "sqnr"
            continue
        other = labels if info.needs_labels else ref
        per = info.per_sample(out, other)
        rows = 80 if info.outputs == "logits" else 20  # per position, or per sample
        assert per.shape == (rows,) and per.dtype == torch.float64
        assert float(per.mean()) == pytest.approx(info.fn(out, other), abs=1e-15)


def test_check_metric_and_related_metrics() -> None:
    logits, three, emb = _logits(4, 10), _logits(4, 3), _logits(4, 2, 8)
    for name in METRICS:
        if name != "accuracy":
            check_metric(name, logits, has_labels=False)
    refused = [
        ("accuracy", logits, False, "needs a 'labels' array"),
        ("top5", three, True, "at least 5 classes"),
        ("kl", torch.zeros(4, 1), False, "at least 2 classes"),
        ("agreement", torch.zeros(4), False, "class scores"),
        ("f1", logits, True, "unknown metric"),
    ]
    for name, out, labels, words in refused:
        with pytest.raises(MPQError, match=words) as info:
            check_metric(name, out, has_labels=labels)
        assert info.value.code == "metric_not_applicable"
    assert related_metrics("kl", logits, has_labels=True) == ("kl", "accuracy", "agreement", "top5")
    assert related_metrics("agreement", three, has_labels=False) == ("agreement", "kl")
    assert related_metrics("nmse", emb, has_labels=False) == ("nmse", "cosine", "sqnr")


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        cosine(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="at least one sample"):
        sqnr(torch.zeros(0, 3), torch.zeros(0, 3))


# --- evaluate on the real digits CNN ----------------------------------------------------------


def test_evaluate_digits_drops_padding(digits, digits_program, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ir = exported_program_to_ir(digits_program)
    assert ir.inputs == (TensorSpec("x", (32, 1, 8, 8), "float32"),)
    z = np.load(digits.npz)
    x, y = z["x"], z["labels"]
    path = tmp_path / "d.npz"
    np.savez(path, x=x, labels=y, **{"calib/x": x[:32]})
    data = load_dataset(path, ir.inputs)
    gm = to_graph_module(ir)
    out = evaluate(gm, data, "evaluation")
    assert out.shape == (540, 10) and not out.requires_grad
    xt = torch.from_numpy(x)
    with torch.no_grad():
        head = torch.cat([gm(xt[i : i + 32]) for i in range(0, 512, 32)])
        tail = gm(xt[-32:])[-28:]  # the last 28 samples in a batch without padding
    assert torch.equal(out[:512], head)
    torch.testing.assert_close(out[512:], tail, rtol=1e-5, atol=1e-5)
    acc = accuracy(out, torch.from_numpy(y))
    assert acc == accuracy_score(y, out.argmax(1).numpy()) and acc > 0.9
    assert agreement(out, out) == 1.0 and kl_divergence(out, out) == 0.0


def test_evaluate_runs_without_grad_and_checks_outputs(tmp_path: Path) -> None:
    np.savez(tmp_path / "v.npz", v=np.ones((10, 4), np.float32))
    data = load_dataset(tmp_path / "v.npz", [TensorSpec("v", (4, 4), "float32")])
    layer = torch.nn.Linear(4, 2)
    out = evaluate(layer, data, "evaluation")
    assert out.shape == (8, 2) and not out.requires_grad  # 10 samples, 2 for calibration
    assert [len(evaluate(layer, data, "calibration", batch_size=b)) for b in (1, 3)] == [2, 2]
    with pytest.raises(ValueError, match="4 rows"):
        evaluate(lambda v: v.sum(), data, "evaluation")
