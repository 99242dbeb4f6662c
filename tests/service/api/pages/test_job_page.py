"""``/ui/jobs/{id}`` over a real server and worker: the page, its fragment, downloads, cancel.

The page of a succeeded job has every element of the DOM contract and shows what the
API answers for the job (its trials, front, uniform baselines, artifacts and their
sha256); a download is byte for byte the API's; another team's job is a 404 page on
every route; cancel refuses a form without the session's CSRF token (403
``csrf_failed``, the job unchanged), cancels a queued job with it, and a finished job
answers the API's 409 ``conflict`` page.

Rendered directly from unsaved rows (no server): a failed job's code and message, float
islands on the plan, and the trials table capped at :data:`MAX_TRIAL_ROWS` rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from service.api.pages.job import MAX_TRIAL_ROWS, page_context
from service.api.pages.render import ENV
from service.db.models import Job, JobStatus, Model
from tests.service.api.pages.conftest import Element, JobStack, csrf_of, parse_html, sign_in


@pytest.fixture(scope="module")
def browser(job_stack: JobStack) -> Iterator[httpx.Client]:
    """A dashboard session of team A (whose jobs these are)."""
    with sign_in(job_stack.server, job_stack.server.key_a) as c:
        yield c


@pytest.fixture(scope="module")
def api(job_stack: JobStack) -> Iterator[httpx.Client]:
    """Team A's API client."""
    with job_stack.server.client(job_stack.server.key_a) as c:
        yield c


def _api_job(api: httpx.Client, job_id: int) -> dict[str, Any]:
    r = api.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def test_a_succeeded_jobs_page_has_the_contracts_elements(
    job_stack: JobStack, browser: httpx.Client, api: httpx.Client
) -> None:
    job_id = job_stack.done[0]
    job = _api_job(api, job_id)
    trials = api.get(f"/v1/jobs/{job_id}/trials").json()
    r = browser.get(f"/ui/jobs/{job_id}")
    assert r.status_code == 200, r.text
    page = parse_html(r.text)
    assert re.search(rf"<title>Job #{job_id} ", r.text)

    status = page.one(id="job-status")
    assert status.one(cls="badge").all_text().strip() == "succeeded"
    assert status.find_all("progress")
    assert "data-live" not in status.attrs  # final: nothing to refresh

    front = page.one("svg", id="front")
    measured = [t for t in trials["data"] if t["metric"] is not None]
    circles = front.find_all("circle", cls="trial")
    assert len(circles) == len(measured) > 0
    assert {c.attrs["data-row"] for c in circles} == {f"trial-{t['number']}" for t in measured}
    assert len(front.find_all("path", cls="front-line")) == 1
    assert len(front.find_all(cls="uniform")) == len(job["result"]["uniform"]) > 0
    chosen = front.one(cls="chosen")
    assert chosen.attrs["data-row"] == f"trial-{job['result']['chosen']['trial']}"
    for mark in [*circles, chosen, *front.find_all(cls="uniform")]:
        assert mark.find_all("title"), mark

    layers = page.one("svg", id="layers")
    model = api.get(f"/v1/models/{job['model_id']}").json()
    rows = layers.find_all("g", cls="layer")
    assert [g.attrs["data-layer"] for g in rows] == [
        x["name"] for x in model["inventory"]["layers"]
    ]
    assert all(g.find_all("title") for g in rows)

    table = page.one("table", id="trials")
    assert "data-sortable" in table.attrs
    ids = {tr.attrs.get("id") for tr in table.find_all("tr") if tr.attrs.get("id")}
    assert ids == {f"trial-{t['number']}" for t in trials["data"]}

    assert page.one("a", id="rerun").attrs["href"] == f"/ui/jobs/new?from={job_id}"
    assert not page.find_all("form", id="cancel")  # nothing to cancel


def test_artifacts_table_and_download_match_the_api(
    job_stack: JobStack, browser: httpx.Client, api: httpx.Client
) -> None:
    job_id = job_stack.done[0]
    listed = {a["name"]: a for a in api.get(f"/v1/jobs/{job_id}/artifacts").json()["data"]}
    page = parse_html(browser.get(f"/ui/jobs/{job_id}").text)
    table = page.one("table", id="artifacts")
    link = table.one("a", cls="download", data_name="model.mpq")
    assert link.attrs["href"] == f"/ui/jobs/{job_id}/artifacts/model.mpq"
    shas = {td.all_text().strip() for td in table.find_all("td", cls="sha256")}
    assert shas == {a["sha256"] for a in listed.values()}
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in shas)

    r = browser.get(link.attrs["href"])
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == listed["model.mpq"]["sha256"]
    assert r.headers["etag"] == f'"{listed["model.mpq"]["sha256"]}"'
    assert r.headers["content-disposition"].startswith("attachment")
    assert r.content == api.get(f"/v1/jobs/{job_id}/artifacts/model.mpq").content
    again = browser.get(link.attrs["href"], headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    missing = browser.get(f"/ui/jobs/{job_id}/artifacts/nope.bin")
    assert missing.status_code == 404 and "<code>not_found</code>" in missing.text


def test_the_status_fragment_says_reload_once_final_and_keep_while_active(
    job_stack: JobStack, browser: httpx.Client
) -> None:
    r = browser.get(f"/ui/jobs/{job_stack.done[0]}/status")
    assert r.status_code == 200
    assert r.headers["x-mpq-live"] == "reload"
    assert parse_html(r.text).one(cls="badge").all_text().strip() == "succeeded"

    queued = job_stack.queued
    r = browser.get(f"/ui/jobs/{queued}/status")
    assert r.status_code == 200
    assert r.headers["x-mpq-live"] == "keep"
    assert parse_html(r.text).one(cls="badge").all_text().strip() == "queued"


def test_a_queued_jobs_page_reads_and_refreshes(job_stack: JobStack, browser: httpx.Client) -> None:
    queued = job_stack.queued
    r = browser.get(f"/ui/jobs/{queued}")
    assert r.status_code == 200, r.text
    page = parse_html(r.text)
    status = page.one(id="job-status")
    assert status.attrs["data-live"] == f"/ui/jobs/{queued}/status"
    assert "no trials yet" in page.one("svg", id="front").all_text()
    assert not page.find_all("circle", cls="trial")
    form = page.one("form", id="cancel")
    assert form.attrs["action"] == f"/ui/jobs/{queued}/cancel"
    assert form.one("input", name="csrf").attrs["value"] == csrf_of(r.text)


def test_another_teams_job_is_a_404_page_on_every_route(job_stack: JobStack) -> None:
    job_id = job_stack.done[0]
    with sign_in(job_stack.server, job_stack.server.key_b) as other:
        csrf = csrf_of(other.get("/ui/jobs").text)
        answers = [
            other.get(f"/ui/jobs/{job_id}"),
            other.get(f"/ui/jobs/{job_id}/status"),
            other.get(f"/ui/jobs/{job_id}/artifacts/model.mpq"),
            other.post(f"/ui/jobs/{job_stack.queued}/cancel", data={"csrf": csrf}),
        ]
    for r in answers:
        assert r.status_code == 404, (r.request.url, r.status_code)
        assert "<code>not_found</code>" in r.text
    with job_stack.server.client(job_stack.server.key_a) as api:
        assert _api_job(api, job_stack.queued)["status"] == "queued"


def test_signed_out_visitors_are_sent_to_sign_in(job_stack: JobStack) -> None:
    with httpx.Client(base_url=job_stack.server.url) as c:
        r = c.get(f"/ui/jobs/{job_stack.done[0]}")
    assert r.status_code == 303
    assert r.headers["location"] == f"/ui/signin?next=/ui/jobs/{job_stack.done[0]}"


def test_cancel_needs_the_csrf_token_then_cancels_and_a_finished_job_is_a_conflict(
    job_stack: JobStack, browser: httpx.Client, api: httpx.Client
) -> None:
    queued = job_stack.queued
    for data in ({}, {"csrf": "not-the-token"}):
        r = browser.post(f"/ui/jobs/{queued}/cancel", data=data)
        assert r.status_code == 403
        assert "<code>csrf_failed</code>" in r.text
    assert _api_job(api, queued)["status"] == "queued"

    csrf = csrf_of(browser.get(f"/ui/jobs/{queued}").text)
    r = browser.post(f"/ui/jobs/{queued}/cancel", data={"csrf": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == f"/ui/jobs/{queued}"
    assert _api_job(api, queued)["status"] == "cancelled"
    page = browser.get(f"/ui/jobs/{queued}")
    assert "was cancelled" in page.text
    assert not parse_html(page.text).find_all("form", id="cancel")
    assert browser.get(f"/ui/jobs/{queued}/status").headers["x-mpq-live"] == "reload"

    done = job_stack.done[0]
    r = browser.post(f"/ui/jobs/{done}/cancel", data={"csrf": csrf})
    assert r.status_code == 409
    assert "<code>conflict</code>" in r.text
    assert _api_job(api, done)["status"] == "succeeded"


def _render_job(job: Job, model: Model, records: list[dict[str, Any]]) -> Element:
    context = page_context(job, model, records=records, front=[], artifacts=[])
    page = ENV.get_template("job.html").render(viewer=None, csrf="", path="/ui/jobs/7", **context)
    return parse_html(page)


def _job(**over: Any) -> Job:
    fields: dict[str, Any] = {
        "id": 7,
        "model_id": 1,
        "dataset_id": 1,
        "status": JobStatus.FAILED,
        "config": {"metric": "accuracy", "targets": {"max_drop": 0.01}},
        "trials_done": 0,
        "trials_total": 8,
        "created_at": datetime(2026, 12, 4, 12, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 12, 4, 12, 1, tzinfo=UTC),
    }
    return Job(**(fields | over))


MODEL = Model(
    id=1,
    name="net <b>",
    version=2,
    inventory={
        "float_bytes": 4000,
        "layers": [
            {"name": "conv", "kind": "conv2d", "params": 144, "weight_shape": [16, 1, 3, 3]},
            {"name": "fc", "kind": "linear", "params": 330, "weight_shape": [10, 32]},
        ],
    },
)


def test_a_failed_job_shows_its_error_code_and_message_escaped() -> None:
    page = _render_job(
        _job(error_code="invalid_data", error_message="bad <labels> & more"), MODEL, []
    )
    error = page.one(cls="error")
    assert error.one("code").all_text() == "invalid_data"
    assert "bad <labels> & more" in error.all_text()
    assert "no trials yet" in page.one("svg", id="front").all_text()
    assert page.one(id="job-status").one(cls="badge").all_text().strip() == "failed"
    assert not page.find_all("form", id="cancel") and page.find_all("a", id="rerun")


def test_float_islands_are_marked_and_the_trials_table_is_capped() -> None:
    plan = {
        "version": 1,
        "layers": {"conv": {"weight": "int4", "activation": "a8", "rounding": "gptq"}},
    }
    result = {
        "chosen": {"trial": 0, "plan": plan, "metric": 0.9, "payload_bytes": 1500,
                   "float_layers": {"fc": "too sensitive"}, "integer_metric": 0.89},
        "front": [0],
        "sensitivity": {"conv": {"int4/gptq/a8": 0.002}},
        "targets": {"metric_floor": 0.89, "byte_ceiling": None},
        "met_targets": True,
    }  # fmt: skip
    records = [
        {"number": n, "state": "complete", "metric": 0.9, "bytes": 1500 + n, "feasible": True,
         "source": "sampler", "seconds": 0.1, "plan": {"conv": "int4/gptq/a8"}}
        for n in range(MAX_TRIAL_ROWS + 20)
    ]  # fmt: skip
    job = _job(status=JobStatus.SUCCEEDED, result=result, baseline={"metric": 0.91, "bytes": 4000})
    page = _render_job(job, MODEL, records)
    layers = page.one("svg", id="layers")
    fc = layers.one("g", cls="layer", data_layer="fc")
    assert "float-island" in fc.classes and "too sensitive" in fc.one("title").all_text()
    assert "float island: too sensitive" in page.one("table", id="plan").all_text()
    rows = [tr for tr in page.one("table", id="trials").find_all("tr") if "id" in tr.attrs]
    assert len(rows) == MAX_TRIAL_ROWS
    assert f"Showing the first {MAX_TRIAL_ROWS} of {MAX_TRIAL_ROWS + 20} trials" in page.all_text()
    assert len(page.one("svg", id="front").find_all("circle", cls="trial")) == MAX_TRIAL_ROWS + 20
    assert "net <b>" in page.one("h1").all_text()
