"""``/ui/models`` and ``/ui/models/{id}`` on a real server: inventory, jobs, the heatmap.

The session's :func:`~tests.service.api.pages.conftest.job_stack` provides the digits
model with two succeeded jobs (the heatmap is its latest's sensitivity) and a queued one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Digits
from tests.service.api.pages.conftest import JobStack, parse_html, sign_in

LAYERS = ["features.0", "features.4", "features.7", "classifier"]


@pytest.fixture(scope="module")
def page(job_stack: JobStack) -> Iterator[httpx.Client]:
    with sign_in(job_stack.server, job_stack.server.key_a) as client:
        yield client


@pytest.fixture(scope="module")
def api(job_stack: JobStack) -> Iterator[httpx.Client]:
    with job_stack.server.client(job_stack.server.key_a) as client:
        yield client


@pytest.fixture(scope="module")
def model_id(job_stack: JobStack, api: httpx.Client) -> int:
    model: int = api.get(f"/v1/jobs/{job_stack.done[0]}").json()["model_id"]
    return model


def _model_jobs(api: httpx.Client, model_id: int) -> list[dict[str, Any]]:
    jobs = api.get("/v1/jobs", params={"limit": 100}).json()["data"]
    return [j for j in jobs if j["model_id"] == model_id]


def test_models_page_lists_the_uploaded_model(
    page: httpx.Client, api: httpx.Client, model_id: int
) -> None:
    r = page.get("/ui/models")
    assert r.status_code == 200, r.text
    row = parse_html(r.text).one("table", id="models").one("tr", id=f"model-{model_id}")
    cells = [td.words() for td in row.find_all("td")]
    assert cells[0] == "digits" and cells[2] == "v1" and cells[3] == "pt2"
    assert cells[5] == "4"  # layers
    assert cells[6] == "5,690"  # params
    assert cells[8] == "3"  # BN folds: the three convolutions
    assert cells[9] == str(len(_model_jobs(api, model_id)))  # jobs
    assert row.find_all("a", href=f"/ui/models/{model_id}")


def test_model_page_shows_the_inventory_jobs_and_datasets(
    page: httpx.Client, api: httpx.Client, model_id: int
) -> None:
    r = page.get(f"/ui/models/{model_id}")
    assert r.status_code == 200, r.text
    doc = parse_html(r.text)
    rows = doc.one("table", id="inventory").one("tbody").find_all("tr")
    assert [row.find_all("td")[1].words() for row in rows] == LAYERS
    assert [row.find_all("td")[6].words() for row in rows] == ["yes", "yes", "yes", "no"]
    assert "16 \u00d7 1 \u00d7 3 \u00d7 3" in rows[0].words()
    assert doc.find_all("a", href=f"/ui/jobs/new?model_id={model_id}")
    table = doc.one("table", id="model-jobs")
    for job in _model_jobs(api, model_id):
        row = table.one("tr", id=f"job-{job['id']}")
        assert row.one(cls="badge").words() == job["status"]
        assert row.find_all("a", href=f"/ui/jobs/{job['id']}")
    dataset_id = api.get(f"/v1/jobs/{_model_jobs(api, model_id)[0]['id']}").json()["dataset_id"]
    assert doc.one("table", id="model-datasets").find_all("tr", id=f"dataset-{dataset_id}")


def test_model_page_draws_the_latest_jobs_sensitivity(
    job_stack: JobStack, page: httpx.Client, api: httpx.Client, model_id: int
) -> None:
    done = [api.get(f"/v1/jobs/{i}").json() for i in job_stack.done]
    latest = max(done, key=lambda j: (j["finished_at"], j["id"]))
    result = latest["result"]
    doc = parse_html(page.get(f"/ui/models/{model_id}").text)
    svg = doc.one("svg", id="sensitivity")
    rows = svg.find_all("g", cls="row")
    assert [g.attrs["data-layer"] for g in rows] == LAYERS  # one row per layer, in order
    measured = result["sensitivity"]
    formats = list(measured[LAYERS[0]])
    for g in rows:
        layer = g.attrs["data-layer"]
        cells = g.find_all("rect", cls="cell")
        assert len(cells) == len(formats)
        for cell, fmt in zip(cells, formats, strict=True):
            assert float(cell.attrs["data-value"]) == measured[layer][fmt]
            title = cell.one("title").words()
            assert title == f"{layer} · {fmt}: damage {measured[layer][fmt]!r}"
    assert doc.find_all("a", href=f"/ui/jobs/{latest['id']}")
    assert f"job #{latest['id']}" in doc.words()
    assert result["sensitivity_method"] in doc.words()


def test_a_model_without_jobs_says_so(
    job_stack: JobStack, page: httpx.Client, api: httpx.Client, digits: Digits
) -> None:
    with open(digits.pt2, "rb") as f:
        r = api.post("/v1/models", files={"file": ("d.pt2", f)}, data={"name": "digits-nojobs"})
    assert r.status_code == 201, r.text
    doc = parse_html(page.get(f"/ui/models/{r.json()['id']}").text)
    assert not doc.find_all("svg", id="sensitivity")
    assert any("No sensitivity" in h.words() for h in doc.find_all(cls="hint"))
    assert len(doc.one("table", id="inventory").one("tbody").find_all("tr")) == 4


def test_another_teams_model_is_a_404_page(job_stack: JobStack, model_id: int) -> None:
    server = job_stack.server
    with sign_in(server, server.key_b) as other:
        r = other.get(f"/ui/models/{model_id}")
        assert r.status_code == 404
        assert parse_html(r.text).one(cls="error").one("code").words() == "not_found"
        listing = parse_html(other.get("/ui/models").text).one("table", id="models")
        assert not listing.find_all("tr", id=f"model-{model_id}")
