"""Dashboard page tests over real processes: a uvicorn server, a worker, a signed-in browser.

:func:`job_stack` (one per test session) starts the embedded stack (SQLite database and
broker) and a worker, uploads the digits model and data, runs two small jobs (8 trials;
the second over other formats, so that their plans differ) to success, stops the worker
and queues a third job that therefore stays queued: the tests see a finished job and an
active one without waiting on more searches.

:func:`sign_in` opens a dashboard session over HTTP as a browser does (the sign-in
form's double-submit token, then the session cookie). The browser fixtures
(:func:`~tests.service.api.pages.harness.browser`, ``up_stack``) live in
:mod:`tests.service.api.pages.harness`, the page reading helpers in
:mod:`tests.service.api.pages.html`; both are imported here for the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import Digits
from tests.service.api.conftest import Server, start_stack
from tests.service.api.pages.harness import (  # noqa: F401 -- fixtures and helpers for the tests
    UpStack,
    browser,
    mpq,
    shoot,
    sign_in_form,
    up_stack,
)
from tests.service.api.pages.html import Element, csrf_of, parse_html  # noqa: F401
from tests.workers.conftest import FINAL, job_body, start_worker, upload_digits, wait_for


@contextmanager
def sign_in(server: Server, key: str) -> Iterator[httpx.Client]:
    """A client holding a dashboard session opened with ``key`` (as a browser signs in)."""
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.get("/ui/signin")
        assert r.status_code == 200, r.text
        r = c.post("/ui/signin", data={"key": key, "csrf": csrf_of(r.text), "next": "/ui/jobs"})
        assert r.status_code == 303, r.text
        assert "mpq_session" in c.cookies
        yield c


@dataclass
class JobStack:
    """The session's stack: two succeeded jobs and one left queued (no worker runs)."""

    server: Server
    done: tuple[int, int]
    queued: int


@pytest.fixture(scope="session")
def job_stack(tmp_path_factory: pytest.TempPathFactory, digits: Digits) -> Iterator[JobStack]:
    """See the module's docstring."""
    for server in start_stack("embedded", tmp_path_factory.mktemp("pages")):
        with server.client(server.key_a) as c:
            model_id, dataset_id = upload_digits(c, digits)
            bodies = [
                job_body(model_id, dataset_id, budget={"trials": 8}),
                job_body(model_id, dataset_id, budget={"trials": 8}, space=["int4", "int8"]),
            ]
            with start_worker(server):
                ids = []
                for body in bodies:
                    r = c.post("/v1/jobs", json=body)
                    assert r.status_code == 202, r.text
                    ids.append(int(r.json()["id"]))
                for job_id in ids:
                    job = wait_for(server, c, job_id, lambda j: j["status"] in FINAL)
                    assert job["status"] == "succeeded", job
            r = c.post("/v1/jobs", json=job_body(model_id, dataset_id, budget={"trials": 8}))
            assert r.status_code == 202, r.text
            yield JobStack(server, (ids[0], ids[1]), int(r.json()["id"]))
