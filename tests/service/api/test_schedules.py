"""``/v1/models/{name}/versions``, aliases and ``/v1/schedules`` over a real API server."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import Digits
from tests.service.api.conftest import Server, upload_digits


@pytest.fixture(scope="module")
def ids(server: Server, digits: Digits) -> tuple[int, int, int]:
    """Two versions of `digits` (ids) and a dataset of version 1, uploaded by team alpha."""
    with server.client(server.key_a) as c:
        v1, dataset = upload_digits(c, digits)
        with open(digits.pt2, "rb") as f:
            r = c.post("/v1/models", files={"file": ("d.pt2", f)}, data={"name": "digits"})
        assert r.status_code == 201, r.text
        with open(digits.pt2, "rb") as f:
            r2 = c.post("/v1/models", files={"file": ("d.pt2", f)}, data={"name": "team/cnn"})
        assert r2.status_code == 201, r2.text
        return v1, int(r.json()["id"]), dataset


def _code(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def test_versions_and_aliases(server: Server, ids: tuple[int, int, int]) -> None:
    v1, v2, _ = ids
    with server.client(server.key_a) as a, server.client(server.key_b) as b:
        r = a.put("/v1/models/digits/aliases/production", json={"version": 1})
        assert r.status_code == 200 and r.json()["id"] == v1, r.text
        assert r.json()["aliases"] == ["production"]
        r = a.get("/v1/models/digits/versions")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["count"] == 2 and [m["version"] for m in body["data"]] == [2, 1]
        assert [m["aliases"] for m in body["data"]] == [[], ["production"]]
        assert a.get(f"/v1/models/{v1}").json()["aliases"] == ["production"]
        listed = {m["id"]: m["aliases"] for m in a.get("/v1/models").json()["data"]}
        assert listed[v1] == ["production"] and listed[v2] == []
        # moved
        assert a.put("/v1/models/digits/aliases/production", json={"version": 2}).status_code == 200
        assert a.get(f"/v1/models/{v2}").json()["aliases"] == ["production"]
        # a name with a slash, URL-encoded
        cnn = quote("team/cnn", safe="")
        r = a.put(f"/v1/models/{cnn}/aliases/candidate", json={"version": 1})
        assert r.status_code == 200 and r.json()["name"] == "team/cnn", r.text
        assert a.get(f"/v1/models/{cnn}/versions").json()["data"][0]["aliases"] == ["candidate"]
        # errors
        _code(a.get("/v1/models/resnet/versions"), 404, "not_found")
        _code(b.get("/v1/models/digits/versions"), 404, "not_found")  # another team's
        _code(b.put("/v1/models/digits/aliases/x", json={"version": 1}), 404, "not_found")
        _code(a.put("/v1/models/digits/aliases/x", json={"version": 9}), 404, "not_found")
        for bad in ("latest", "Prod", "123", "a" * 65):
            _code(
                a.put(f"/v1/models/digits/aliases/{bad}", json={"version": 1}), 422, "invalid_alias"
            )
        _code(a.put("/v1/models/digits/aliases/x", json={"version": "1"}), 422, "invalid_request")
        _code(a.put("/v1/models/digits/aliases/x", json={}), 422, "invalid_request")
        # delete
        assert a.delete("/v1/models/digits/aliases/production").status_code == 204
        _code(a.delete("/v1/models/digits/aliases/production"), 404, "not_found")
        _code(b.delete(f"/v1/models/{cnn}/aliases/candidate"), 404, "not_found")


def _body(dataset: int, **over: Any) -> dict[str, Any]:
    body = {
        "name": "nightly",
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        "model": {"name": "digits"},
        "dataset_id": dataset,
        "job": {"metric": "agreement", "budget": {"trials": 4}, "space": ["int4", "int8"]},
    }
    return body | over


def test_schedules_crud_runs_and_team_scoping(server: Server, ids: tuple[int, int, int]) -> None:
    _, _, dataset = ids
    with server.client(server.key_a) as a, server.client(server.key_b) as b:
        r = a.post("/v1/schedules", json=_body(dataset))
        assert r.status_code == 201, r.text
        made = r.json()
        sid = made["id"]
        assert made["model"] == {"name": "digits", "alias": None} and made["enabled"] is True
        assert made["job"]["budget"]["trials"] == 4 and made["job"]["metric"] == "agreement"
        assert made["next_run_at"] is not None and made["timezone"] == "Europe/Paris"
        _code(a.post("/v1/schedules", json=_body(dataset)), 409, "conflict")
        assert a.get(f"/v1/schedules/{sid}").json() == made | {"next_run_at": made["next_run_at"]}
        page = a.get("/v1/schedules", params={"limit": 1}).json()
        assert page["count"] == 1 and page["data"][0]["id"] == sid
        assert b.get("/v1/schedules").json() == {"data": [], "count": 0}
        r = a.patch(f"/v1/schedules/{sid}", json={"cron": "*/5 * * * *", "enabled": False})
        assert r.status_code == 200, r.text
        assert (r.json()["cron"], r.json()["enabled"], r.json()["next_run_at"]) == (
            "*/5 * * * *",
            False,
            None,
        )
        assert r.json()["updated_at"] > made["updated_at"]
        _code(a.patch(f"/v1/schedules/{sid}", json={"cron": "* *"}), 422, "invalid_schedule")
        nulls = {"name": None, "cron": None, "timezone": None, "enabled": None, "job": None}
        r = a.patch(f"/v1/schedules/{sid}", json=nulls)
        assert r.status_code == 200 and r.json()["cron"] == "*/5 * * * *", r.text
        _code(a.patch(f"/v1/schedules/{sid}", json={"model": {"name": "x"}}), 404, "not_found")
        assert a.get(f"/v1/schedules/{sid}/runs").json() == {"data": [], "count": 0}
        for call in (b.get, b.delete, lambda u: b.patch(u, json={"enabled": True})):
            _code(call(f"/v1/schedules/{sid}"), 404, "not_found")
        _code(b.get(f"/v1/schedules/{sid}/runs"), 404, "not_found")
        _code(a.get("/v1/schedules/0"), 422, "invalid_request")
        assert a.delete(f"/v1/schedules/{sid}").status_code == 204
        _code(a.get(f"/v1/schedules/{sid}"), 404, "not_found")


@pytest.mark.parametrize(
    ("over", "status", "code"),
    [
        ({"cron": "0 2 * *"}, 422, "invalid_schedule"),
        ({"cron": "0 26 * * *"}, 422, "invalid_schedule"),
        ({"timezone": "Mars/Base"}, 422, "invalid_schedule"),
        ({"model": {"name": "resnet"}}, 404, "not_found"),
        ({"model": {"name": "digits", "alias": "nope"}}, 404, "not_found"),
        ({"model": {"name": "digits", "alias": "Bad Alias"}}, 422, "invalid_alias"),
        ({"dataset_id": 999999}, 404, "not_found"),
        ({"job": {"targets": {"max_drop": -1}}}, 422, "invalid_plan"),
        ({"job": {"budget": {"trials": 100000}}}, 422, "invalid_plan"),
        ({"job": {"model_id": 1}}, 422, "invalid_request"),
        ({"job": {"metric": "accuracy", "targets": {"max_bytes": 1}}}, 422, "invalid_plan"),
        ({"name": ""}, 422, "invalid_request"),
        ({"name": " "}, 422, "invalid_name"),
        ({"enabled": "yes"}, 422, "invalid_request"),
    ],
)
def test_bad_schedules_answer_their_code_and_leave_none(
    server: Server, ids: tuple[int, int, int], over: dict[str, Any], status: int, code: str
) -> None:
    with server.client(server.key_a) as a:
        _code(a.post("/v1/schedules", json=_body(ids[2], **({"name": "bad"} | over))), status, code)
        assert all(s["name"] != "bad" for s in a.get("/v1/schedules").json()["data"])


def test_another_teams_dataset_is_not_found(server: Server, ids: tuple[int, int, int]) -> None:
    with server.client(server.key_b) as b:
        r = b.post("/v1/schedules", json=_body(ids[2], model={"name": "digits"}))
        _code(r, 404, "not_found")


def test_job_responses_carry_schedule_fields(server: Server, ids: tuple[int, int, int]) -> None:
    v1, _, dataset = ids
    with server.client(server.key_a) as a:
        body = {"model_id": v1, "dataset_id": dataset, "metric": "agreement"}
        body |= {"budget": {"trials": 2}}
        r = a.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        job = a.get(f"/v1/jobs/{r.json()['id']}").json()
        assert (job["schedule_id"], job["warm_start_job_id"], job["regression"]) == (None,) * 3
        assert a.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200


def test_a_job_names_its_model_by_name_and_alias(server: Server, ids: tuple[int, int, int]) -> None:
    v1, v2, dataset = ids
    with server.client(server.key_a) as a, server.client(server.key_b) as b:
        assert a.put("/v1/models/digits/aliases/stable", json={"version": 1}).status_code == 200
        base = {"dataset_id": dataset, "metric": "agreement", "budget": {"trials": 2}}
        for ref, expected in (
            ({"name": "digits", "alias": "stable"}, v1),
            ({"name": "digits"}, v2),
        ):
            r = a.post("/v1/jobs", json=base | {"model": ref})
            assert r.status_code == 202 and r.json()["model_id"] == expected, r.text
            assert a.post(f"/v1/jobs/{r.json()['id']}/cancel").status_code == 200
        _code(a.post("/v1/jobs", json=base | {"model": {"name": "nope"}}), 404, "not_found")
        bad = {"name": "digits", "alias": "Stable!"}
        _code(a.post("/v1/jobs", json=base | {"model": bad}), 422, "invalid_alias")
        _code(b.post("/v1/jobs", json=base | {"model": {"name": "digits"}}), 404, "not_found")
        both = base | {"model": {"name": "digits"}, "model_id": v1}
        r = a.post("/v1/jobs", json=both)
        _code(r, 422, "invalid_request")
        assert "exactly one of `model_id` and `model`" in r.json()["error"]["message"]
        _code(a.post("/v1/jobs", json=base), 422, "invalid_request")
