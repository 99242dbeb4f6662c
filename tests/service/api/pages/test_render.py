"""The dashboard's number formats and job words: hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from search import JobSpec
from service.api.pages.render import (
    ENV,
    NONE,
    fmt_bytes,
    fmt_duration,
    fmt_metric,
    fmt_ratio,
    fmt_when,
)
from service.api.pages.views import duration_s, job_progress, targets_text
from service.db import Job, JobStatus
from service.progress import progress_doc


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, NONE),
        (0, "0 B"),
        (812, "812 B"),
        (1023, "1,023 B"),
        (1024, "1 KiB"),
        (1938, "1.89 KiB"),
        (22760, "22.2 KiB"),
        (150 * 1024, "150 KiB"),
        (1234567, "1.18 MiB"),
        (3 << 30, "3 GiB"),
    ],
)
def test_bytes_read_with_binary_prefixes(n: int | None, text: str) -> None:
    assert fmt_bytes(n) == text


def test_metrics_ratios_durations_and_times() -> None:
    assert fmt_metric(0.990123456) == "0.9901"
    assert fmt_metric(None) == NONE and fmt_metric(float("nan")) == NONE
    assert fmt_ratio(11.744) == "11.7\u00d7" and fmt_ratio(None) == NONE
    assert [fmt_duration(s) for s in (4.2, 65, 3725, None, -1)] == [
        "4s",
        "1m05s",
        "1h02m",
        NONE,
        NONE,
    ]
    assert fmt_when(datetime(2026, 12, 4, 23, 58, 41, tzinfo=UTC)) == "2026-12-04 23:58"
    assert fmt_when(datetime(2026, 12, 4, 23, 58)) == "2026-12-04 23:58"  # naive is UTC
    assert fmt_when(None) == NONE


def test_targets_read_in_words() -> None:
    spec = JobSpec(trials=3).to_json()  # no target: every field null
    assert targets_text(spec) == "none (the Pareto front only)"
    spec["targets"]["max_drop"] = 0.01
    assert targets_text(spec) == "metric drop at most 0.01"
    config = {"targets": {"max_drop_rel": 0.02, "max_bytes": 8 << 20, "min_ratio": 4}}
    assert targets_text(config) == (
        "relative drop at most 2%; size at most 8 MiB; compression at least 4x"
    )
    assert targets_text({"targets": {"max_bytes": "8MB"}}) == "size at most 8MB"
    assert targets_text({}) == "none (the Pareto front only)"


def _job(status: JobStatus, **fields: object) -> Job:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    job = Job(status=status, trials_done=0, trials_total=40, created_at=now, config={})
    for name, value in fields.items():
        setattr(job, name, value)
    return job


def test_a_jobs_progress_bar_follows_its_phase() -> None:
    queued = job_progress(_job(JobStatus.QUEUED))
    assert (queued.value, queued.max, queued.caption) == (None, None, "waiting for a worker")
    doc = progress_doc("preparing", step="sensitivity", done=12, total=50)
    preparing = job_progress(_job(JobStatus.PREPARING, progress=doc))
    assert (preparing.value, preparing.max) == (12, 50)
    assert preparing.caption == "preparing: sensitivity 12/50"
    loading = job_progress(
        _job(JobStatus.PREPARING, progress=progress_doc("preparing", step="loading"))
    )
    assert loading.max is None and loading.caption == "preparing: loading"
    doc = progress_doc("searching", done=8, total=40)
    running = job_progress(_job(JobStatus.RUNNING, progress=doc, trials_done=8))
    assert (running.value, running.max, running.caption) == (8, 40, "searching: 8/40")
    done = job_progress(_job(JobStatus.SUCCEEDED, trials_done=40))
    assert (done.value, done.max, done.caption) == (40, 40, "40/40 trials")


def test_a_jobs_duration_runs_until_it_ends() -> None:
    start = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    finished = _job(JobStatus.SUCCEEDED, finished_at=start + timedelta(seconds=95))
    assert duration_s(finished) == 95
    running = _job(JobStatus.RUNNING)
    assert duration_s(running, now=start + timedelta(minutes=3)) == 180
    assert duration_s(_job(JobStatus.FAILED)) is None  # failed before the column existed


def test_templates_escape_what_users_named() -> None:
    html = ENV.from_string("<td>{{ name }}</td>").render(name='<script>alert("x")</script>')
    assert html == "<td>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</td>"
