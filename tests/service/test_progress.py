"""The progress document, the time-left estimate and the report throttle."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service import progress as p
from service.progress import Throttle, describe, eta_seconds, progress_doc

NOW = datetime(2026, 12, 3, 16, 20, 1, tzinfo=UTC)


def test_the_document_has_every_field_and_rounds_the_eta() -> None:
    doc = progress_doc("searching", done=8, total=40, eta_s=65.04, now=NOW)
    assert doc == {
        "phase": "searching",
        "step": None,
        "done": 8,
        "total": 40,
        "eta_s": 65.0,
        "updated_at": "2026-12-03T16:20:01+00:00",
    }
    with pytest.raises(AssertionError):
        progress_doc("preparing", step="warming")


@pytest.mark.parametrize(
    ("mean_s", "left", "parallelism", "deadline", "eta"),
    [
        (None, 10, 1, None, None),  # no trial finished: nothing known
        (2.0, 10, 1, None, 20.0),  # 10 waves of one trial
        (2.0, 10, 4, None, 6.0),  # ceil(10 / 4) = 3 waves
        (2.0, 1, 4, None, 2.0),  # the last trial takes a whole trial's time
        (2.0, 10, 1, 5.0, 5.0),  # the timeout comes first
        (2.0, 10, 1, -3.0, 0.0),  # past the timeout: never negative
        (2.0, 0, 2, None, 0.0),  # nothing left
    ],
)
def test_eta_is_the_waves_left_times_the_mean_or_the_timeout(
    mean_s: float | None, left: int, parallelism: int, deadline: float | None, eta: float | None
) -> None:
    got = eta_seconds(mean_s=mean_s, left=left, parallelism=parallelism, deadline_left_s=deadline)
    assert got == eta


def test_describe_says_the_phase_step_counts_and_time_left() -> None:
    def line(*args: str, **kw: object) -> str:
        return describe(progress_doc(*args, **kw))  # type: ignore[arg-type]

    assert line("preparing", step="loading", done=0, total=1) == "preparing: loading"
    assert line("preparing", step="sensitivity", done=12, total=50) == (
        "preparing: sensitivity 12/50"
    )
    assert line("searching", done=3, total=40) == "searching: 3/40"
    assert line("searching", done=3, total=40, eta_s=65.4) == "searching: 3/40, ~1m05s left"
    assert line("searching", done=39, total=40, eta_s=7.6) == "searching: 39/40, ~8s left"
    assert line("finalizing") == "finalizing"


def test_the_throttle_passes_new_steps_at_once_and_repeats_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(p.time, "monotonic", lambda: clock[0])
    throttle = Throttle(interval_s=1.0)
    seen = []
    for t, step in [
        (100.0, "loading"),
        (100.1, "sensitivity"),  # a new step: at once
        (100.5, "sensitivity"),  # too soon
        (101.0, "sensitivity"),  # 0.9 s after the last report: still too soon
        (101.2, "sensitivity"),  # 1.1 s: through
        (101.3, "seeding"),  # a new step: at once
    ]:
        clock[0] = t
        seen.append(throttle(step))
    assert seen == [True, True, False, False, True, True]
