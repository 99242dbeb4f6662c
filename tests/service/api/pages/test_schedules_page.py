"""``/ui/schedules`` on a real server: a team's schedules with their latest runs (the job,
its status, whether it regressed, or the error that kept a run from submitting), its
webhooks with their latest delivery; another team sees none of it. Also the nightly
facts on other pages: a scheduled job's page, aliases on the models page.

The schedule and the webhook are made over the API. The runs are written with the
repositories beat uses (:func:`service.db.repos.claim_run` and ``record_run``; beat
itself is tested in ``tests/workers/test_beat.py`` and ``tests/test_nightly.py``), on
jobs given the states and regression documents the page must show.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from service.db import Job, get_team_by_name, make_engine, session_factory
from service.db.base import utcnow
from service.db.models import JobStatus, Model
from service.db.repos import claim_run, record_run
from service.domain import dispatch_job
from tests.conftest import Digits
from tests.service.api.conftest import Server, start_stack, upload_digits
from tests.service.api.pages.conftest import Element, parse_html, sign_in
from tests.service.db.rows import add_job

REGRESSED = {"regressed": True, "what": ["bytes"], "summary": "bytes up 14.9% (9,120 -> 10,480)"}
STEADY = {"regressed": False, "what": [], "summary": "no regression (bytes -0.4%)"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_stack("embedded", tmp_path_factory.mktemp("schedules-page"))


@pytest.fixture(scope="module")
def nightly(server: Server, digits: Digits) -> dict[str, int]:
    """Team A's schedule with three runs (regressed, steady, refused) and a webhook."""
    with server.client(server.key_a) as c:
        model_id, dataset_id = upload_digits(c, digits)
        r = c.post(
            "/v1/schedules",
            json={
                "name": "nightly-digits",
                "cron": "30 2 * * *",
                "timezone": "Europe/Paris",
                "model": {"name": "digits", "alias": None},
                "dataset_id": dataset_id,
                "job": {"metric": "accuracy", "targets": {"max_drop": 0.01}},
            },
        )
        assert r.status_code == 201, r.text
        schedule_id = r.json()["id"]
        r = c.post("/v1/webhooks", json={"url": "https://ci.example/h", "events": ["job.failed"]})
        assert r.status_code == 201, r.text
        webhook_id = r.json()["id"]
    engine = make_engine(server.database_url)
    try:
        with session_factory(engine)() as s:
            team = get_team_by_name(s, "alpha")
            model = s.get(Model, model_id)
            assert model is not None
            night = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
            jobs = {}
            for day, (status, regression) in enumerate(
                [(JobStatus.SUCCEEDED, STEADY), (JobStatus.FAILED, None)]
            ):
                job = add_job(s, team, model)
                s.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(
                        status=status,
                        finished_at=utcnow(),
                        regression=regression,
                        schedule_id=schedule_id,
                    )
                )
                s.commit()
                run = claim_run(s, schedule_id=schedule_id, due_at=night + timedelta(days=day))
                assert run is not None
                record_run(s, run=run, job_id=job.id)
                jobs[status.value] = job.id
            regressed = add_job(s, team, model)
            s.execute(
                update(Job)
                .where(Job.id == regressed.id)
                .values(
                    status=JobStatus.SUCCEEDED,
                    finished_at=utcnow(),
                    regression=REGRESSED | {"compared_with": jobs["succeeded"]},
                    schedule_id=schedule_id,
                    warm_start_job_id=jobs["succeeded"],
                )
            )
            s.commit()
            run = claim_run(s, schedule_id=schedule_id, due_at=night + timedelta(days=2))
            assert run is not None
            record_run(s, run=run, job_id=regressed.id)
            refused = claim_run(s, schedule_id=schedule_id, due_at=night + timedelta(days=3))
            assert refused is not None
            record_run(s, run=refused, error_code="quota_exceeded", error_message="3 jobs active")
            assert dispatch_job(s, job_id=jobs["failed"])  # one pending delivery
    finally:
        engine.dispose()
    return {
        "schedule": schedule_id,
        "webhook": webhook_id,
        "steady": jobs["succeeded"],
        "failed": jobs["failed"],
        "regressed": regressed.id,
    }


@pytest.fixture(scope="module")
def page(server: Server) -> Iterator[httpx.Client]:
    with sign_in(server, server.key_a) as client:
        yield client


def _has(element: Element, *parts: str) -> bool:
    """Whether each of ``parts`` is in ``element``'s words (its own text comes before
    its children's in :meth:`Element.words`, so the parts are checked one by one)."""
    words = element.words()
    return all(part in words for part in parts)


def test_the_page_shows_each_run_with_its_job_status_and_regression(
    page: httpx.Client, nightly: dict[str, int]
) -> None:
    r = page.get("/ui/schedules")
    assert r.status_code == 200, r.text
    doc = parse_html(r.text)
    row = doc.one("tr", id=f"schedule-{nightly['schedule']}")
    cells = [td.words() for td in row.find_all("td")]
    assert cells[0] == "nightly-digits"
    assert row.find_all("td")[1].one("code").words() == "30 2 * * *"
    assert "Europe/Paris" in cells[1]
    assert cells[2] == "digits latest"
    assert cells[4] not in ("", "\u2013")  # the next due time, as GET /v1/schedules computes
    runs = row.find_all(cls="run")
    assert len(runs) == 4  # newest first
    assert _has(runs[0], "quota_exceeded", "3 jobs active") and not runs[0].find_all("a")
    regressed = runs[1].one("span", cls="regressed")
    assert regressed.words() == "regressed" and "bytes up 14.9%" in regressed.attrs["title"]
    assert _has(runs[1], f"job {nightly['regressed']}", "succeeded", "bytes up 14.9%")
    assert _has(runs[2], f"job {nightly['failed']}", "failed") and "regress" not in runs[2].words()
    assert _has(runs[3], f"job {nightly['steady']}", "succeeded", "no regression")
    assert not runs[3].find_all(cls="regressed")
    link = row.one("a", href=f"/ui/jobs/{nightly['regressed']}")
    assert link.words() == f"job {nightly['regressed']}"
    nav = doc.one("a", href="/ui/schedules")
    assert nav.attrs.get("aria-current") == "page"


def test_the_page_shows_each_webhook_and_its_latest_delivery(
    page: httpx.Client, nightly: dict[str, int], server: Server
) -> None:
    doc = parse_html(page.get("/ui/schedules").text)
    row = doc.one("tr", id=f"webhook-{nightly['webhook']}")
    cells = [td.words() for td in row.find_all("td")]
    assert cells[0] == "https://ci.example/h" and cells[1] == "job.failed"
    assert cells[2] == "enabled"
    delivery = row.one("td", cls="delivery")
    assert delivery.one("span", cls="badge").words() == "pending"
    assert (
        delivery.one("a", href=f"/ui/jobs/{nightly['failed']}").words()
        == f"job {nightly['failed']}"
    )
    assert _has(delivery, "job.failed of", "0 attempts")
    assert "whsec_" not in page.get("/ui/schedules").text  # the secret is never shown


def test_another_team_sees_none_of_it(server: Server, nightly: dict[str, int]) -> None:
    with sign_in(server, server.key_b) as other:
        r = other.get("/ui/schedules")
    assert r.status_code == 200, r.text
    doc = parse_html(r.text)
    assert not doc.find_all("tr", id=f"schedule-{nightly['schedule']}")
    assert not doc.find_all("tr", id=f"webhook-{nightly['webhook']}")
    assert "nightly-digits" not in r.text and "ci.example" not in r.text
    assert "No schedules yet" in r.text and "No webhooks yet" in r.text


def test_a_visitor_without_a_session_is_sent_to_sign_in(server: Server) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/ui/schedules")
    assert r.status_code == 303 and r.headers["location"] == "/ui/signin?next=/ui/schedules"


def test_a_scheduled_jobs_page_says_what_it_was_compared_with(
    page: httpx.Client, nightly: dict[str, int]
) -> None:
    r = page.get(f"/ui/jobs/{nightly['regressed']}")
    assert r.status_code == 200, r.text
    notice = parse_html(r.text).one("div", id="nightly")
    assert "regressed" in notice.classes
    assert _has(notice, f"schedule {nightly['schedule']}", "Regressed", "bytes up 14.9%")
    steady = nightly["steady"]
    assert len(notice.find_all("a", href=f"/ui/jobs/{steady}")) == 2  # warm start, compared
    r = page.get(f"/ui/jobs/{steady}")
    notice = parse_html(r.text).one("div", id="nightly")
    assert "regressed" not in notice.classes and "Regressed" not in notice.words()


def test_the_models_page_shows_each_versions_aliases(
    page: httpx.Client, server: Server, nightly: dict[str, int]
) -> None:
    with server.client(server.key_a) as c:
        r = c.put("/v1/models/digits/aliases/production", json={"version": 1})
        assert r.status_code == 200, r.text
    doc = parse_html(page.get("/ui/models").text)
    [badge] = doc.find_all("span", cls="alias")
    assert badge.words() == "production" and "digits@production get v1" in badge.attrs["title"]
