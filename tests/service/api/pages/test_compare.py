"""``/ui/compare`` over a real server: two succeeded jobs side by side, and its refusals.

The page overlays one front per job (``svg#fronts``, ``g.series``) and lists the plans
per layer (``table#plans``), each cell the choice key the API reports for that layer,
cells of a row that differs marked ``diff``. One job is a page that says how to pick
jobs; seven are a 422 ``invalid_request`` page; another team's job a 404 page.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.service.api.pages.conftest import JobStack, parse_html, sign_in


@pytest.fixture(scope="module")
def browser(job_stack: JobStack) -> Iterator[httpx.Client]:
    """A dashboard session of team A."""
    with sign_in(job_stack.server, job_stack.server.key_a) as c:
        yield c


def _chosen_keys(api: httpx.Client, job_id: int) -> dict[str, str]:
    job = api.get(f"/v1/jobs/{job_id}").json()
    trial = job["result"]["chosen"]["trial"]
    trials = api.get(f"/v1/jobs/{job_id}/trials").json()["data"]
    plan: dict[str, str] = next(t["plan"] for t in trials if t["number"] == trial)
    return plan


def test_two_jobs_fronts_and_plans_side_by_side(job_stack: JobStack, browser: httpx.Client) -> None:
    a, b = job_stack.done
    r = browser.get("/ui/compare", params=[("ids", a), ("ids", b)])
    assert r.status_code == 200, r.text
    page = parse_html(r.text)

    fronts = page.one("svg", id="fronts")
    series = fronts.find_all("g", cls="series")
    assert len(series) == 2
    assert [s.attrs["data-series"].split()[0] for s in series] == [f"#{a}", f"#{b}"]
    assert all(s.find_all("path", cls="front-line") for s in series)
    assert all(len(s.find_all(cls="chosen")) == 1 for s in series)

    with job_stack.server.client(job_stack.server.key_a) as api:
        plans = [_chosen_keys(api, a), _chosen_keys(api, b)]
    table = page.one("table", id="plans")
    body = table.one("tbody")
    rows = body.find_all("tr")
    assert [tr.find_all("td")[0].all_text().strip() for tr in rows] == list(plans[0])
    differing = 0
    for tr in rows:
        layer, *cells = tr.find_all("td")
        texts = [c.all_text().strip() for c in cells]
        assert texts == [p[layer.all_text().strip()] for p in plans]
        marked = ["diff" in c.classes for c in cells]
        assert marked == [len(set(texts)) > 1] * 2
        differing += marked[0]
    assert differing > 0  # the second job searched other formats
    assert len(table.one("tfoot").find_all("tr", cls="summary")) == 4


def test_fewer_than_two_jobs_is_a_page_on_how_to_pick_them(
    job_stack: JobStack, browser: httpx.Client
) -> None:
    for params in ([], [("ids", job_stack.done[0])], [("ids", job_stack.done[0])] * 2):
        r = browser.get("/ui/compare", params=params)
        assert r.status_code == 200
        assert "jobs list" in r.text
        assert not parse_html(r.text).find_all("svg", id="fronts")


def test_more_than_six_jobs_or_another_teams_job_are_refused(
    job_stack: JobStack, browser: httpx.Client
) -> None:
    r = browser.get("/ui/compare", params=[("ids", n) for n in range(1, 8)])
    assert r.status_code == 422
    assert "<code>invalid_request</code>" in r.text

    r = browser.get("/ui/compare", params=[("ids", job_stack.done[0]), ("ids", "x")])
    assert r.status_code == 422
    assert "<code>invalid_request</code>" in r.text

    with sign_in(job_stack.server, job_stack.server.key_b) as other:
        r = other.get("/ui/compare", params=[("ids", n) for n in job_stack.done])
    assert r.status_code == 404
    assert "<code>not_found</code>" in r.text
