"""The dashboard in a real browser (chromium through Playwright) over a real ``mpq up``.

One test walks what a user does, a screenshot of each page on the way (``shoot``): sign
in with team A's key, the empty jobs list, a refused sign-out without its CSRF token,
the New job page (upload the digits model and data, fill and send the job form), the
job page, the jobs list refreshing the job's row live while the worker runs it (no
navigation), the finished job's charts and its ``model.mpq`` download (compared with the
API's sha256), models, model, compare, keys and schedules pages; then team B's browser gets a 404
page for team A's job, and a form sent without its CSRF token is refused and changes
nothing. Selectors are the DOM contract of the dashboard's pages.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

from tests.conftest import Digits
from tests.service.api.pages.conftest import UpStack, shoot
from tests.workers.conftest import job_body

JOB_TIMEOUT_S = 600.0
LIVE_TIMEOUT_S = 300.0
VIEWPORT = {"width": 1400, "height": 900}


def _error_code(page: Any) -> str:
    """The code an error page or a refused form shows (``.error code``)."""
    return str(page.locator(".error code").first.inner_text()).strip()


def _set_field(page: Any, form: str, name: str, value: str) -> None:
    """Give the field ``name`` of ``form`` the value ``value``, whatever its kind."""
    field = page.locator(f"{form} [name={name}]").first
    tag = field.evaluate("e => e.tagName + ':' + (e.type || '')")
    if tag.startswith("SELECT"):
        field.select_option(value)
    elif tag.endswith(":hidden"):
        field.evaluate("(e, v) => { e.value = v; }", value)
    else:
        field.fill(value)


def _sign_in(page: Any, url: str, key: str) -> None:
    page.goto(f"{url}/ui/signin")
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/jobs$"))


def _row_state(page: Any, job_id: int) -> tuple[str, int | None]:
    """(status badge text, progress value or None) of the job's row on the jobs list."""
    row = page.locator(f"tr#job-{job_id}")
    status = str(row.locator(".badge").inner_text()).strip()
    bar = row.locator("progress")
    value = bar.get_attribute("value") if bar.count() else None
    return status, None if value in (None, "") else int(float(value))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_team_walks_the_dashboard(browser: Any, up_stack: UpStack, digits: Digits) -> None:
    url = up_stack.url
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))

    # Sign in; the jobs list is empty.
    page.goto(f"{url}/ui/jobs")
    page.wait_for_url(re.compile(r".*/ui/signin\?next="))
    shoot(page, "01-signin")
    page.fill("#key", up_stack.key_a)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/jobs$"))
    assert "No jobs yet" in page.locator("#job-rows").inner_text()
    shoot(page, "02-jobs-empty")

    # The sign-out form without its CSRF token is refused; the session lives on.
    page.evaluate("document.querySelector('form[action$=\"/signout\"] input[name=csrf]').remove()")
    with page.expect_navigation() as refused:
        page.click("form[action$='/signout'] button")
    assert refused.value is not None and refused.value.status == 403
    assert _error_code(page) == "csrf_failed"
    shoot(page, "03-signout-without-csrf")
    assert page.goto(f"{url}/ui/jobs").status == 200
    assert page.url.endswith("/ui/jobs")

    # New job: upload the model, then its data, then send the job.
    new_page = page.goto(f"{url}/ui/jobs/new")
    shoot(page, "04-new-job-empty")
    assert new_page is not None and new_page.status == 200, "no New job page"
    _set_field(page, "form#upload-model", "name", "digits")
    page.set_input_files("form#upload-model input[type=file]", str(digits.pt2))
    page.click("form#upload-model [type=submit]")
    page.wait_for_url(re.compile(r".*/ui/jobs/new\?model_id=\d+"))
    model_id = int(re.search(r"model_id=(\d+)", page.url)[1])  # type: ignore[index]
    _set_field(page, "form#upload-data", "model_id", str(model_id))
    _set_field(page, "form#upload-data", "name", "digits")
    page.set_input_files("form#upload-data input[type=file]", str(digits.npz))
    page.click("form#upload-data [type=submit]")
    page.wait_for_url(re.compile(r".*/ui/jobs/new\?model_id=\d+&dataset_id=\d+"))
    dataset_id = int(re.search(r"dataset_id=(\d+)", page.url)[1])  # type: ignore[index]
    shoot(page, "05-new-job-uploaded")
    form = "form#new-job"
    _set_field(page, form, "model_id", str(model_id))
    _set_field(page, form, "dataset_id", str(dataset_id))
    _set_field(page, form, "metric", "accuracy")
    _set_field(page, form, "target", "max_drop")
    _set_field(page, form, "target_value", "0.01")
    _set_field(page, form, "trials", "24")
    _set_field(page, form, "seed", "0")
    page.click("#submit-job")
    page.wait_for_url(re.compile(r".*/ui/jobs/\d+$"))
    job_id = int(page.url.rsplit("/", 1)[1])
    assert page.locator("#job-status .badge").count() == 1
    shoot(page, "06-job-submitted")

    # The jobs list refreshes the job's row by itself until the job ends.
    page.goto(f"{url}/ui/jobs")
    page.wait_for_load_state("load")
    navigations: list[str] = []
    page.on("framenavigated", lambda f: navigations.append(f.url) if f == page.main_frame else None)
    first = _row_state(page, job_id)
    seen = [first]
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    while (state := _row_state(page, job_id))[0] != "succeeded":
        assert state[0] not in ("failed", "cancelled"), f"job {job_id} ended {state[0]}"
        assert time.monotonic() < deadline, f"the row never reached succeeded: {seen}"
        if state != seen[-1]:
            seen.append(state)
            if len(seen) == 2:
                shoot(page, "07-jobs-live")
        page.wait_for_timeout(250)
    seen.append(state)
    assert navigations == [], f"the jobs page navigated: {navigations}"
    assert first[0] != "succeeded", "the job ended before the list showed it running"
    values = [v for _, v in seen if v is not None]
    assert values and values[-1] > (first[1] or 0), f"no progress seen: {seen}"
    shoot(page, "08-jobs-succeeded")

    # The finished job's page: the charts, the artifacts, the download.
    page.click(f"tr#job-{job_id} a[href$='/ui/jobs/{job_id}']")
    page.wait_for_url(re.compile(rf".*/ui/jobs/{job_id}$"))
    assert page.locator("#job-status .badge").inner_text().strip() == "succeeded"
    assert page.locator("svg#front circle.trial").count() > 0
    assert page.locator("svg#front .chosen").count() == 1
    with up_stack.client(up_stack.key_a) as api:
        layers = api.get(f"/v1/models/{model_id}").json()["inventory"]["layers"]
        artifacts = api.get(f"/v1/jobs/{job_id}/artifacts").json()
    assert page.locator("svg#layers g.layer").count() == len(layers)
    shoot(page, "09-job-succeeded")
    listed = artifacts["data"] if isinstance(artifacts, dict) else artifacts
    expected = next(a["sha256"] for a in listed if a["name"] == "model.mpq")
    link = page.locator('a.download[data-name="model.mpq"]')
    assert link.get_attribute("href") == f"/ui/jobs/{job_id}/artifacts/model.mpq"
    row = page.locator("table#artifacts tr", has=link)
    assert row.locator("td.sha256").inner_text().strip() == expected
    with page.expect_download() as download:
        link.click()
    saved = download.value.path()
    assert saved is not None and _sha256(Path(saved)) == expected

    # A second, smaller job through the API, to compare two.
    with up_stack.client(up_stack.key_a) as api:
        body = job_body(model_id, dataset_id, budget={"trials": 8})
        r = api.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        second = int(r.json()["id"])
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (status := api.get(f"/v1/jobs/{second}").json()["status"]) != "succeeded":
            assert status not in ("failed", "cancelled"), f"job {second} ended {status}"
            assert time.monotonic() < deadline, f"job {second} still {status}\n{up_stack.log()}"
            time.sleep(0.5)

    page.goto(f"{url}/ui/models")
    assert page.locator(f"table#models a[href$='/ui/models/{model_id}']").count() >= 1
    shoot(page, "10-models")
    page.goto(f"{url}/ui/models/{model_id}")
    assert page.locator("table#inventory tbody tr").count() == len(layers)
    assert page.locator("svg#sensitivity").count() == 1
    assert page.locator(f"table#model-jobs a[href$='/ui/jobs/{job_id}']").count() >= 1
    shoot(page, "11-model")
    page.goto(f"{url}/ui/compare?ids={job_id}&ids={second}")
    assert page.locator("svg#fronts g.series").count() == 2
    assert page.locator("table#plans").count() == 1
    shoot(page, "12-compare")
    page.goto(f"{url}/ui/keys")
    assert page.locator("table#keys tr[id^='key-']").count() >= 1
    shoot(page, "13-keys")
    with up_stack.client(up_stack.key_a) as api:  # a schedule and a webhook, over the API
        schedule = {"name": "nightly", "cron": "30 2 * * *", "timezone": "Europe/Paris"}
        schedule |= {"model": {"name": "digits", "alias": None}, "dataset_id": dataset_id}
        assert api.post("/v1/schedules", json=schedule).status_code == 201
        hook = {"url": "https://ci.example/h", "events": ["job.succeeded"]}
        assert api.post("/v1/webhooks", json=hook).status_code == 201
    page.goto(f"{url}/ui/schedules")
    assert page.locator("table#schedules tr[id^='schedule-'] td").first.inner_text() == "nightly"
    assert page.locator("table#webhooks tr[id^='webhook-'] code").inner_text() == hook["url"]
    shoot(page, "13-schedules")

    # Team B's browser: team A's job is a 404 page.
    other = browser.new_context(viewport=VIEWPORT)
    page_b = other.new_page()
    _sign_in(page_b, url, up_stack.key_b)
    answer = page_b.goto(f"{url}/ui/jobs/{job_id}")
    assert answer is not None and answer.status == 404
    assert _error_code(page_b) == "not_found"
    shoot(page_b, "14-other-team-404")
    other.close()

    # A form sent without its CSRF token is refused, and no job is made.
    with up_stack.client(up_stack.key_a) as api:
        before = api.get("/v1/jobs").json()["count"]
    page.goto(f"{url}/ui/jobs/new?from={job_id}")
    page.evaluate("document.querySelector('form#new-job input[name=csrf]').remove()")
    with page.expect_navigation() as refused:
        page.click("#submit-job")
    assert refused.value is not None and refused.value.status == 403
    assert _error_code(page) == "csrf_failed"
    shoot(page, "15-form-without-csrf")
    with up_stack.client(up_stack.key_a) as api:
        assert api.get("/v1/jobs").json()["count"] == before

    violations = [m for m in console if "Content Security Policy" in m]
    assert violations == [], violations
    context.close()
