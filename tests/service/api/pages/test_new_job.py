"""``/ui/jobs/new`` on a real server: the form submits what the API would, and refuses alike.

Uploads go through the page's multipart forms (the digits model is larger than the JSON
body limit, so a page upload exempt from it is what lets it through); a job form is
compared with ``POST /v1/jobs`` given the same values: same status, code and message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Digits
from tests.service.api.conftest import Server, start_stack
from tests.service.api.pages.conftest import csrf_of, parse_html, sign_in

PICKLE = b"\x80\x04K\x01."  # torch.save-style pickle protocol 4 of the int 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_stack("embedded", tmp_path_factory.mktemp("new-job"))


@pytest.fixture(scope="module")
def page(server: Server) -> Iterator[httpx.Client]:
    with sign_in(server, server.key_a) as client:
        yield client


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client(server.key_a) as client:
        yield client


def _csrf(page: httpx.Client) -> str:
    return csrf_of(page.get("/ui/jobs/new").text)


def _upload(page: httpx.Client, path: str, file: Path, fields: dict[str, str]) -> httpx.Response:
    with open(file, "rb") as f:
        return page.post(path, files={"file": (file.name, f)}, data=fields)


@pytest.fixture(scope="module")
def ids(page: httpx.Client, api: httpx.Client, digits: Digits) -> tuple[int, int]:
    """The digits model and data, uploaded through the page's two forms."""
    token = _csrf(page)
    r = _upload(page, "/ui/models/upload", digits.pt2, {"csrf": token, "name": "digits"})
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/ui/jobs/new?model_id=")
    model_id = int(r.headers["location"].rsplit("=", 1)[1])
    r = _upload(
        page,
        "/ui/datasets/upload",
        digits.npz,
        {"csrf": token, "name": "digits data", "model_id": str(model_id)},
    )
    assert r.status_code == 303, r.text
    dataset_id = int(r.headers["location"].rsplit("=", 1)[1])
    assert r.headers["location"] == f"/ui/jobs/new?model_id={model_id}&dataset_id={dataset_id}"
    return model_id, dataset_id


def test_page_uploads_are_the_apis_models_and_datasets(
    api: httpx.Client, ids: tuple[int, int], digits: Digits
) -> None:
    model_id, dataset_id = ids
    model = api.get(f"/v1/models/{model_id}").json()
    assert model["name"] == "digits" and model["kind"] == "pt2"
    assert model["size_bytes"] == digits.pt2.stat().st_size > 64 * 1024  # past the JSON limit
    assert len(model["inventory"]["layers"]) == 4
    dataset = api.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["model_id"] == model_id and dataset["name"] == "digits data"


def test_a_pickle_upload_gets_the_apis_code(
    server: Server, page: httpx.Client, api: httpx.Client, tmp_path: Path
) -> None:
    pickle = tmp_path / "model.pt2"
    pickle.write_bytes(PICKLE)
    with open(pickle, "rb") as f:
        expected = api.post("/v1/models", files={"file": ("model.pt2", f)}, data={"name": "p"})
    before = server.rows()
    r = _upload(page, "/ui/models/upload", pickle, {"csrf": _csrf(page), "name": "p"})
    assert r.status_code == expected.status_code == 422
    error = parse_html(r.text).one(cls="error")
    assert error.one("code").words() == expected.json()["error"]["code"] == "torch_save_pickle"
    assert server.rows() == before
    assert parse_html(r.text).find_all("form", id="upload-model")  # the New job page again


def test_an_upload_without_the_token_is_refused_before_import(
    server: Server, page: httpx.Client, digits: Digits
) -> None:
    before = server.rows(), {f for f in server.files() if not f.startswith("tmp")}
    for fields in ({"name": "no-token"}, {"name": "bad-token", "csrf": "x" * 40}):
        r = _upload(page, "/ui/models/upload", digits.pt2, fields)
        assert r.status_code == 403, r.text
        assert parse_html(r.text).one(cls="error").one("code").words() == "csrf_failed"
    assert server.rows() == before[0]
    assert {f for f in server.files()} == before[1]  # no blob kept, no temp file left


def test_form_offers_the_teams_models_and_preselects(
    page: httpx.Client, ids: tuple[int, int]
) -> None:
    model_id, dataset_id = ids
    doc = parse_html(page.get(f"/ui/jobs/new?model_id={model_id}&dataset_id={dataset_id}").text)
    form = doc.one("form", id="new-job")
    assert form.attrs["action"] == "/ui/jobs/new" and form.attrs["method"] == "post"
    model = form.one("select", name="model_id").one("option", value=str(model_id))
    assert "selected" in model.attrs and model.words().startswith("digits v1")
    dataset = form.one("select", name="dataset_id").one("option", value=str(dataset_id))
    assert "selected" in dataset.attrs and "796 samples" in dataset.words()
    metrics = [o.attrs["value"] for o in form.one("select", name="metric").find_all("option")]
    assert {"accuracy", "kl", "sqnr"} <= set(metrics)
    targets = {o.attrs["value"] for o in form.one("select", name="target").find_all("option")}
    assert {"max_drop", "max_drop_rel", "min_metric", "max_bytes", "min_ratio", "none"} <= targets
    assert form.one("input", name="trials").attrs["value"] == "40"
    for name in ("target_value", "space", "seed", "csrf"):
        assert form.one("input", name=name)
    assert form.one("button", id="submit-job")


def _form(ids: tuple[int, int], **over: str) -> dict[str, str]:
    model_id, dataset_id = ids
    return {
        "model_id": str(model_id),
        "dataset_id": str(dataset_id),
        "metric": "accuracy",
        "target": "max_drop",
        "target_value": "0.01",
        "trials": "8",
        "space": "int2, int4, int8",
        "seed": "3",
    } | over


def _body(ids: tuple[int, int], **targets: Any) -> dict[str, Any]:
    return {
        "model_id": ids[0],
        "dataset_id": ids[1],
        "metric": "accuracy",
        "targets": targets,
        "space": ["int2", "int4", "int8"],
        "budget": {"trials": 8},
        "seed": 3,
    }


def _job_count(api: httpx.Client) -> int:
    count: int = api.get("/v1/jobs").json()["count"]
    return count


def test_a_good_form_submits_the_job(
    page: httpx.Client, api: httpx.Client, ids: tuple[int, int]
) -> None:
    r = page.post("/ui/jobs/new", data=_form(ids, csrf=_csrf(page)))
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].removeprefix("/ui/jobs/"))
    job = api.get(f"/v1/jobs/{job_id}").json()
    assert (job["model_id"], job["dataset_id"]) == ids
    config = job["config"]
    assert config["targets"]["max_drop"] == 0.01
    assert config["budget"]["trials"] == 8 and config["seed"] == 3
    assert config["space"] == ["int2", "int4", "int8"]
    assert job["created_by"]["prefix"] == api.headers["authorization"][7:19]


@pytest.mark.parametrize(
    ("value", "sent", "code"),
    [("abc", "abc", "invalid_request"), ("5", 5, "invalid_plan"), ("-1", -1, "invalid_plan")],
)
def test_a_bad_target_is_refused_as_the_api_refuses_it(
    page: httpx.Client,
    api: httpx.Client,
    ids: tuple[int, int],
    value: str,
    sent: Any,
    code: str,
) -> None:
    expected = api.post("/v1/jobs", json=_body(ids, max_drop=sent))
    before = _job_count(api)
    r = page.post("/ui/jobs/new", data=_form(ids, target_value=value, csrf=_csrf(page)))
    assert r.status_code == expected.status_code == 422, r.text
    error = parse_html(r.text).one(cls="error")
    assert error.one("code").words() == expected.json()["error"]["code"] == code
    assert error.text.strip() == expected.json()["error"]["message"]
    form = parse_html(r.text).one("form", id="new-job")
    assert form.one("input", name="target_value").attrs["value"] == value  # kept
    assert form.one("input", name="trials").attrs["value"] == "8"
    assert _job_count(api) == before


def test_a_form_without_the_token_is_refused(
    page: httpx.Client, api: httpx.Client, ids: tuple[int, int]
) -> None:
    before = _job_count(api)
    for extra in ({}, {"csrf": "forged-token-value-1234567890"}):
        r = page.post("/ui/jobs/new", data=_form(ids, **extra))
        assert r.status_code == 403, r.text
        assert parse_html(r.text).one(cls="error").one("code").words() == "csrf_failed"
    assert _job_count(api) == before


def test_rerun_prefills_every_field_from_a_job(
    server: Server, page: httpx.Client, api: httpx.Client, ids: tuple[int, int]
) -> None:
    body = _body(ids, max_drop_rel=0.02, max_bytes="2KB") | {
        "sampler": "random",
        "parallelism": 2,
        "pins": {"classifier": "int8"},
        "budget": {"trials": 12, "timeout_s": 300.0},
    }
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    form = parse_html(page.get(f"/ui/jobs/new?from={job_id}").text).one("form", id="new-job")

    def value(name: str) -> str:
        return form.one("input", name=name).attrs["value"]

    def selected(name: str) -> str:
        chosen = [
            o for o in form.one("select", name=name).find_all("option") if "selected" in o.attrs
        ]
        assert len(chosen) == 1, name
        return chosen[0].attrs["value"]

    assert selected("model_id") == str(ids[0]) and selected("dataset_id") == str(ids[1])
    assert selected("target") == "max_drop_rel" and value("target_value") == "0.02"
    assert selected("size_target") == "max_bytes" and value("size_target_value") == "2000"
    assert value("trials") == "12" and value("timeout_s") == "300.0"
    assert value("space") == "int2, int4, int8" and value("seed") == "3"
    assert selected("sampler") == "random" and value("parallelism") == "2"
    assert value("pins") == "classifier=int8"
    # submitted unchanged, the form makes the same spec
    fields = {i.attrs["name"]: i.attrs.get("value", "") for i in form.find_all("input")}
    fields |= {s.attrs["name"]: selected(s.attrs["name"]) for s in form.find_all("select")}
    r = page.post("/ui/jobs/new", data=fields)
    assert r.status_code == 303, r.text
    again = api.get(r.headers["location"].replace("/ui/jobs/", "/v1/jobs/")).json()
    assert again["config"] == api.get(f"/v1/jobs/{job_id}").json()["config"]
    with sign_in(server, server.key_b) as other:
        refused = other.get(f"/ui/jobs/new?from={job_id}")
        assert refused.status_code == 404
        assert parse_html(refused.text).one(cls="error").one("code").words() == "not_found"
