"""``mpq search`` as users run it: a real subprocess writing real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from commands import search as search_command

MPQ = [sys.executable, "-m", "commands"]


def _mpq(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MPQ_CACHE_DIR": str(cache)}
    return subprocess.run([*MPQ, *args], capture_output=True, text=True, timeout=600, env=env)


def test_search_writes_everything_and_eval_reproduces_it(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    run = _mpq(
        "search",
        str(digits.pt2),
        "--data",
        str(digits.npz),
        "--metric",
        "accuracy",
        "--max-drop",
        "0.01",
        "--space",
        "int2,int3,int4,int8,cb16",
        "--trials",
        "20",
        "--parallelism",
        "2",  # a second process: `mpq search-worker` on the study in --out
        "--out",
        str(out),
        "--json",
        cache=tmp_path / "cache",
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["met_targets"] is True and doc["trials"]["total"] == 20
    assert set(doc["files"]) == {
        "result.json",
        "model.mpq",
        "model.onnx",
        "pareto.png",
        "layers.png",
    }
    chosen = doc["chosen"]
    result = json.loads((out / "result.json").read_text())
    assert result["chosen"] == chosen and len(result["trials"]) == 20
    ev = _mpq("eval", str(out / "model.mpq"), "--data", str(digits.npz), "--json", cache=tmp_path)
    assert ev.returncode == 0, ev.stderr
    # `mpq eval` scores the whole evaluation split: the search and held-out splits together
    assert json.loads(ev.stdout)["value"] == chosen["evaluation_metric"]
    assert doc["holdout"]["heldout_samples"] == chosen["heldout"]["samples"] == 135
    assert doc["met_targets"] == (
        chosen["heldout"]["metric"] >= doc["targets"]["heldout_metric_floor"]
    )
    assert chosen["metric"] >= doc["baseline"]["metric"] - 0.01
    assert chosen["payload_bytes"] < chosen["file_bytes"] == (out / "model.mpq").stat().st_size


def test_bad_search_arguments_exit_2_with_a_code(digits, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = ["search", str(digits.pt2), "--data", str(digits.npz), "--out", str(tmp_path / "o")]
    for extra, code in (
        (["--max-bytes", "8 parsecs"], "invalid_plan"),
        (["--space", "int9"], "invalid_plan"),
        (["--metric", "sqnr", "--max-drop", "0.1"], "invalid_plan"),
    ):
        run = _mpq(*base, *extra, cache=tmp_path / "cache")
        assert run.returncode == 2, (extra, run.stderr)
        assert run.stderr.startswith(f"error[{code}]: ") and "Traceback" not in run.stderr
        assert "`" not in run.stderr and "targets." not in run.stderr  # flags, not API names
    assert "give --min-metric" in run.stderr
    assert not (tmp_path / "o" / "model.mpq").exists()
    unlabeled = tmp_path / "x.npz"
    np.savez(unlabeled, x=np.load(digits.npz)["x"])
    run = _mpq(
        "search",
        str(digits.pt2),
        "--data",
        str(unlabeled),
        "--metric",
        "accuracy",
        "--out",
        str(tmp_path / "o"),
        cache=tmp_path / "cache",
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error[metric_not_applicable]: "), run.stderr
    assert "labels" in run.stderr


def test_the_progress_line_shows_the_preparation_then_trials_with_time_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = [100.0]
    monkeypatch.setattr(search_command.time, "perf_counter", lambda: clock[0])
    line = search_command._ProgressLine(10, 2, None)
    for step, done, total in [("loading", 0, 1), ("sensitivity", 12, 50), ("seeding", 0, 1)]:
        line.step(step, done, total)
    finished = [0]
    on_trial = line.searching(lambda: finished[0])
    for feasible in (False, True, False, False):  # 3 s a trial, this process's
        clock[0] += 3.0
        finished[0] += 1
        on_trial(SimpleNamespace(feasible=feasible, bytes=2000, metric=0.99))
    line.done()
    frames = capsys.readouterr().err.split("\r")[1:]
    assert all(f.endswith(search_command.CLEAR_LINE) for f in frames[:-1])
    assert [f.removesuffix("\n").removesuffix(search_command.CLEAR_LINE) for f in frames] == [
        "preparing: loading",
        "preparing: sensitivity 12/50",
        "preparing: seeding",
        "searching: 0/10",
        # ceil(left / 2 runners) waves of 3 s
        "searching: 1/10, ~15s left  no plan meets the targets yet",
        "searching: 2/10, ~12s left  best 2,000 B @ 0.9900",
        "searching: 3/10, ~12s left  best 2,000 B @ 0.9900",
        "searching: 4/10, ~9s left  best 2,000 B @ 0.9900",
    ]
