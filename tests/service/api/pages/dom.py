"""Reading dashboard pages in tests: a small element tree, and signing in over HTTP.

:func:`parse` builds a tree of :class:`Element` with the standard library's HTML parser
(void elements such as ``<input>`` close themselves); :meth:`Element.find_all` matches
a tag and optionally an ``id``, classes and attributes. :func:`signin` opens a
dashboard session the way a browser does (the sign-in form, its double-submit token).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx

__all__ = ["Element", "csrf_of", "parse", "signin"]

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Element:
    """One element: its tag, attributes, children and the text directly inside it."""

    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    parts: list[str | Element] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        """All the text inside, children's included, blanks collapsed."""
        raw = "".join(p if isinstance(p, str) else p.text for p in self.parts)
        return re.sub(r"\s+", " ", raw).strip()

    def iter(self) -> list[Element]:
        out = [self]
        for child in self.children:
            out.extend(child.iter())
        return out

    def find_all(
        self, tag: str = "*", *, id: str | None = None, cls: str | None = None, **attrs: str
    ) -> list[Element]:
        """Descendants (self included) with ``tag`` (``*``: any), ``id``, class ``cls``
        and every attribute of ``attrs`` (``_`` in a name stands for ``-``)."""
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            e
            for e in self.iter()
            if (tag == "*" or e.tag == tag)
            and (id is None or e.attrs.get("id") == id)
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k) == v for k, v in want.items())
        ]

    def one(self, tag: str = "*", **kw: str) -> Element:
        """The single descendant matching (an assertion error otherwise)."""
        found = self.find_all(tag, **kw)
        assert len(found) == 1, f"{len(found)} elements match {tag} {kw}"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        parent = self.stack[-1]
        parent.children.append(element)
        parent.parts.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].parts.append(data)


def parse(html: str) -> Element:
    """The element tree of ``html``."""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def csrf_of(html: str) -> str:
    """The CSRF token of a page's forms (its first hidden ``csrf`` input)."""
    return parse(html).find_all("input", name="csrf")[0].attrs["value"]


def signin(url: str, key: str) -> httpx.Client:
    """A client of ``url`` signed in to the dashboard with ``key`` (redirects not followed)."""
    client = httpx.Client(base_url=url, timeout=120, follow_redirects=False)
    page = client.get("/ui/signin")
    assert page.status_code == 200, page.text
    r = client.post("/ui/signin", data={"key": key, "csrf": csrf_of(page.text), "next": "/ui/jobs"})
    assert r.status_code == 303, r.text
    assert "mpq_session" in client.cookies
    return client
