"""``/ui/models`` and ``/ui/models/{id}`` on a real server: inventory, jobs, the heatmap."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.conftest import Digits
from tests.service.api.conftest import Server, start_stack, upload_digits
from tests.service.api.pages.dom import parse, signin
from tests.workers.conftest import job_body, start_worker, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_stack("embedded", tmp_path_factory.mktemp("models-page"))


@pytest.fixture(scope="module")
def ids(server: Server, digits: Digits) -> tuple[int, int]:
    with server.client(server.key_a) as c:
        return upload_digits(c, digits)


@pytest.fixture(scope="module")
def page(server: Server) -> Iterator[httpx.Client]:
    with closing(signin(server.url, server.key_a)) as client:
        yield client


def test_models_page_lists_the_uploaded_model(page: httpx.Client, ids: tuple[int, int]) -> None:
    model_id, _ = ids
    r = page.get("/ui/models")
    assert r.status_code == 200, r.text
    table = parse(r.text).one("table", id="models")
    row = table.one("tr", id=f"model-{model_id}")
    assert "digits" in row.text and "v1" in row.text and "pt2" in row.text
    cells = [td.text for td in row.find_all("td")]
    assert cells[5] == "4"  # layers
    assert cells[6] == "5,690"  # params
    assert cells[8] == "3"  # BN folds: the three convolutions
    assert row.find_all("a", href=f"/ui/models/{model_id}")


def test_model_page_shows_the_inventory_and_no_heatmap_before_a_job(
    page: httpx.Client, ids: tuple[int, int]
) -> None:
    model_id, dataset_id = ids
    r = page.get(f"/ui/models/{model_id}")
    assert r.status_code == 200, r.text
    doc = parse(r.text)
    rows = doc.one("table", id="inventory").one("tbody").find_all("tr")
    names = [row.find_all("td")[1].text for row in rows]
    assert names == ["features.0", "features.4", "features.7", "classifier"]
    assert [row.find_all("td")[6].text for row in rows] == ["yes", "yes", "yes", "no"]
    assert "16 \u00d7 1 \u00d7 3 \u00d7 3" in rows[0].text
    assert not doc.find_all("svg", id="sensitivity")
    assert any("No sensitivity" in h.text for h in doc.find_all(cls="hint"))
    assert doc.find_all("a", href=f"/ui/jobs/new?model_id={model_id}")
    assert doc.find_all("tr", id=f"dataset-{dataset_id}")


def test_another_teams_model_is_a_404_page(server: Server, ids: tuple[int, int]) -> None:
    with closing(signin(server.url, server.key_b)) as other:
        r = other.get(f"/ui/models/{ids[0]}")
        assert r.status_code == 404
        assert parse(r.text).one(cls="error").one("code").text == "not_found"
        listing = parse(other.get("/ui/models").text).one("table", id="models")
        assert not listing.find_all("tr", id=f"model-{ids[0]}")


def test_model_page_draws_the_latest_jobs_sensitivity(
    server: Server, page: httpx.Client, ids: tuple[int, int], tmp_path: Path
) -> None:
    model_id, dataset_id = ids
    with server.client(server.key_a) as api, start_worker(server):
        r = api.post("/v1/jobs", json=job_body(model_id, dataset_id, budget={"trials": 8}))
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        job = wait_for(server, api, job_id, lambda j: j["status"] in {"succeeded", "failed"})
        assert job["status"] == "succeeded", job
        result = api.get(f"/v1/jobs/{job_id}").json()["result"]
    r = page.get(f"/ui/models/{model_id}")
    assert r.status_code == 200, r.text
    doc = parse(r.text)
    svg = doc.one("svg", id="sensitivity")
    rows = svg.find_all("g", cls="row")
    assert [g.attrs["data-layer"] for g in rows] == [
        "features.0",
        "features.4",
        "features.7",
        "classifier",
    ]
    measured = result["sensitivity"]
    formats = list(measured["features.0"])
    for g in rows:
        cells = g.find_all("rect", cls="cell")
        assert len(cells) == len(formats)
        layer = g.attrs["data-layer"]
        for cell, fmt in zip(cells, formats, strict=True):
            assert float(cell.attrs["data-value"]) == measured[layer][fmt]
            assert cell.one("title").text == f"{layer} · {fmt}: damage {measured[layer][fmt]!r}"
    assert f"/ui/jobs/{job_id}" in {a.attrs.get("href") for a in doc.find_all("a")}
    assert result["sensitivity_method"] in doc.text
    jobs = doc.one("table", id="model-jobs")
    row = jobs.one("tr", id=f"job-{job_id}")
    assert row.one(cls="badge").text == "succeeded"
    assert row.find_all("a", href=f"/ui/jobs/{job_id}")
    listing = parse(page.get("/ui/models").text).one("tr", id=f"model-{model_id}")
    assert listing.find_all("td")[9].text == "1"  # jobs
