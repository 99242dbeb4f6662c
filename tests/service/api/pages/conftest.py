"""Dashboard page tests over real processes: a uvicorn server, a worker, a signed-in browser.

:func:`job_stack` (one per test session) starts the embedded stack (SQLite database and
broker) and a worker, uploads the digits model and data, runs two small jobs (8 trials;
the second over other formats, so that their plans differ) to success, stops the worker
and queues a third job that therefore stays queued: the tests see a finished job and an
active one without waiting on more searches.

:func:`sign_in` opens a dashboard session over HTTP as a browser does (the sign-in
form's double-submit token, then the session cookie); :func:`parse_html` reads a page
into a small element tree to look elements up by id, class and attribute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx
import pytest

from tests.conftest import Digits
from tests.service.api.conftest import Server, start_stack
from tests.workers.conftest import FINAL, job_body, start_worker, upload_digits, wait_for

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Element:
    """One element of a parsed page: its tag, attributes, children and own text."""

    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    text: str = ""

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> Iterator[Element]:
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            yield from child.walk()

    def all_text(self) -> str:
        """The text of this element and everything inside it."""
        return self.text + "".join(c.all_text() for c in self.children)

    def words(self) -> str:
        """:meth:`all_text` with each run of blanks as one space, stripped."""
        return " ".join(self.all_text().split())

    def find_all(
        self, tag: str | None = None, *, cls: str | None = None, **attrs: str
    ) -> list[Element]:
        """Elements inside (this one included) with ``tag``, class ``cls`` and ``attrs``."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            e
            for e in self.walk()
            if (tag is None or e.tag == tag)
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k) == v for k, v in wanted.items())
        ]

    def one(self, tag: str | None = None, *, cls: str | None = None, **attrs: str) -> Element:
        """The one element :meth:`find_all` finds (fails when there are none or several)."""
        found = self.find_all(tag, cls=cls, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} class={cls} {attrs}> elements"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def parse_html(page: str) -> Element:
    """The element tree of an HTML page (SVG inside it included)."""
    builder = _Builder()
    builder.feed(page)
    builder.close()
    return builder.root


def csrf_of(page: str) -> str:
    """The CSRF token in a page's hidden ``csrf`` input."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no csrf field on the page"
    return found.group(1)


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
