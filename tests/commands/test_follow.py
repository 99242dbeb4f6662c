"""How a waited-for job is shown (a terminal's line, a CI log's lines) and its exit status."""

from __future__ import annotations

import io
from typing import Any

import pytest

from commands import follow
from commands.client import EXIT_SERVICE, ClientError
from commands.follow import CLEAR_LINE, _Line, job_exit_status, job_line, wait_job


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def job(status: str, **over: Any) -> dict[str, Any]:
    return {"id": 7, "status": status, "progress": None, "result": None} | over


SEARCHING = {"phase": "searching", "step": None, "done": 3, "total": 40, "eta_s": 65.0}


def test_job_line_says_the_phase_of_a_working_job_and_the_status_otherwise() -> None:
    assert job_line(job("running", progress=SEARCHING)) == "job 7: searching: 3/40, ~1m05s left"
    assert job_line(job("queued")) == "job 7: queued"
    assert job_line(job("succeeded", progress=SEARCHING)) == "job 7: succeeded"


def test_a_terminal_gets_one_rewritten_line_ended_once() -> None:
    out = Terminal()
    line = _Line(out, tty=True)
    line.show(job("queued"))
    line.show(job("running", progress=SEARCHING))
    line.end()
    line.end()
    bar = "[##" + "-" * 18 + "] "  # 3 of 40 on 20 columns: 1.5, rounded to even
    assert out.getvalue() == (
        f"\rjob 7: queued{CLEAR_LINE}\r{bar}job 7: searching: 3/40, ~1m05s left{CLEAR_LINE}\n"
    )


def test_a_log_gets_status_changes_at_once_and_progress_at_most_every_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(follow.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    line = _Line(out, tty=False)
    line.show(job("queued"))
    line.show(job("queued"))  # nothing changed
    line.show(job("running", progress=SEARCHING))  # a new status: shown at once
    now[0] += 1
    line.show(job("running", progress=SEARCHING | {"done": 4}))  # too soon
    now[0] += follow.LOG_EVERY_S
    line.show(job("running", progress=SEARCHING | {"done": 9}))
    line.show(job("succeeded"))
    line.end()
    assert out.getvalue().splitlines() == [
        "job 7: queued",
        "job 7: searching: 3/40, ~1m05s left",
        "job 7: searching: 9/40, ~1m05s left",
        "job 7: succeeded",
    ]
    assert "\r" not in out.getvalue()


@pytest.mark.parametrize(
    ("status", "result", "code"),
    [
        ("succeeded", {"met_targets": True}, 0),
        ("succeeded", {}, 0),  # no targets: the front alone
        ("succeeded", {"met_targets": False}, 3),
        ("failed", None, 4),
        ("cancelled", None, 5),
    ],
)
def test_exit_status_of_a_final_job(status: str, result: Any, code: int) -> None:
    assert job_exit_status(job(status, result=result)) == code


class Flaky:
    """A client whose first answers are failures (``ClientError``s), then jobs."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    def get(self, path: str) -> Any:
        answer = self.answers.pop(0)
        if isinstance(answer, ClientError):
            raise answer
        return answer


def test_waiting_bears_a_short_outage_but_not_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow.time, "sleep", lambda s: None)
    down = ClientError("service_unreachable", "cannot reach", exit_status=EXIT_SERVICE)
    out = io.StringIO()
    client: Any = Flaky(job("running", progress=SEARCHING), down, down, job("succeeded"))
    assert wait_job(client, 7, stream=out)["status"] == "succeeded"
    assert out.getvalue().count("cannot reach; trying again") == 1
    gone = ClientError("not_found", "no job 7")
    with pytest.raises(ClientError) as raised:
        wait_job(Flaky(job("queued"), gone), 7, stream=io.StringIO())  # type: ignore[arg-type]
    assert raised.value is gone


def test_an_outage_longer_than_the_grace_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(follow.time, "sleep", sleep)
    monkeypatch.setattr(follow.time, "monotonic", lambda: now[0])
    down = ClientError("service_unreachable", "cannot reach", exit_status=EXIT_SERVICE)
    client: Any = Flaky(*[down] * 100)
    with pytest.raises(ClientError) as raised:
        wait_job(client, 7, stream=io.StringIO())
    assert raised.value is down and now[0] > follow.OUTAGE_S
