"""Webhook rules without a database: URLs, events, the signature, the docs' verifier, backoff."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from service.domain.webhook_events import MAX_BACKOFF_S, backoff_s
from service.domain.webhooks import (
    canonical_body,
    check_events,
    check_url,
    signature_header,
)
from service.errors import WebhookEventsError, WebhookUrlError
from service.outbound import parse_networks

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "url",
    [
        "https://ci.example.com/hook",
        "http://8.8.8.8:8080/x?y=1",
        "HTTPS://Example.COM",
        "http://[2606:4700::1111]:9000/a",
        "https://localhost.example.com/",  # a name: judged by its addresses at delivery
    ],
)
def test_good_urls_pass(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/x", "127.0.0.1, a loopback address"),
        ("http://localhost/", "127.0.0.1, a loopback address"),
        ("http://LocalHost./", "127.0.0.1, a loopback address"),
        ("http://[::1]:9000/a", "::1, a loopback address"),
        ("http://[::ffff:7f00:1]/", "a loopback address"),
        ("http://10.1.2.3/", "10.1.2.3, a private address"),
        ("http://192.168.0.10/", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://[fe80::1]/", "a link-local address"),
        ("http://0.0.0.0/", "an unspecified address"),
        ("http://100.64.0.1/", "not a public address"),
    ],
)
def test_urls_naming_internal_addresses_are_refused_unless_allowed(url: str, why: str) -> None:
    with pytest.raises(WebhookUrlError, match=re.escape(why)) as info:
        check_url(url)
    assert "MPQ_WEBHOOK_ALLOWED_NETWORKS" in info.value.message
    with pytest.raises(WebhookUrlError):  # another network allowed changes nothing
        check_url(url, parse_networks("172.16.0.0/12"))
    everything = parse_networks("0.0.0.0/0,::/0")
    assert check_url(url, everything) == url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("example.com/hook", "http:// or https://"),
        ("https:///path", "no host"),
        ("https://user:pw@example.com/", "user:password"),
        ("https://user@example.com/", "user:password"),
        ("https://example.com/a#frag", "#fragment"),
        ("https://example.com:99999/", "cannot be parsed"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com/" + "a" * 2048, "at most 2,048"),
    ],
)
def test_bad_urls_say_which_rule(url: str, words: str) -> None:
    with pytest.raises(WebhookUrlError, match=re.escape(words)) as info:
        check_url(url)
    assert info.value.code == "invalid_webhook_url"


def test_events_are_deduplicated_in_order_and_checked() -> None:
    assert check_events(["job.failed", "job.succeeded", "job.failed"]) == [
        "job.failed",
        "job.succeeded",
    ]
    with pytest.raises(WebhookEventsError, match="events is empty"):
        check_events([])
    with pytest.raises(WebhookEventsError, match=r"unknown events \['job.started'\]"):
        check_events(["job.succeeded", "job.started"])


def test_signature_matches_a_hand_computed_hmac() -> None:
    # printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test_secret_0123
    body = canonical_body({"a": 1})
    assert body == b'{"a":1}'
    assert signature_header("whsec_test_secret_0123", body, 1700000000) == (
        "t=1700000000,v1=b1e06771f9a20c020fc4b9be257996790d615bbe4d030159b6a5669fdada024c"
    )


def test_canonical_body_is_compact_and_sorted() -> None:
    # ensure_ascii (json's default): the body is ASCII whatever the names hold
    assert canonical_body({"b": [1, 2], "a": {"é": None}}) == b'{"a":{"\\u00e9":null},"b":[1,2]}'


def docs_verifier() -> Any:
    """The ``verify`` function of docs/webhooks.md's Python block, executed."""
    text = (ROOT / "docs" / "webhooks.md").read_text()
    block = re.search(r"<!-- webhook-verify -->\n```python\n(.*?)^```$", text, re.M | re.S)
    assert block, "docs/webhooks.md lost its verification snippet"
    scope: dict[str, Any] = {}
    exec(compile(block.group(1), "docs/webhooks.md", "exec"), scope)
    return scope["verify"]


def test_the_documented_verifier_accepts_ours_and_rejects_tampering_and_replays() -> None:
    verify = docs_verifier()
    secret, body = "whsec_" + "k" * 20, canonical_body({"id": 7, "event": "job.failed"})
    now = int(time.time())
    header = signature_header(secret, body, now)
    assert verify(secret, body, header)
    assert not verify(secret, body + b" ", header)
    assert not verify("whsec_" + "x" * 20, body, header)
    assert not verify(secret, body, header.replace("v1=", "v1=0"))
    old = signature_header(secret, body, now - 301)
    assert not verify(secret, body, old)
    assert verify(secret, body, old, now=now - 200)
    assert not verify(secret, body, "garbage")
    assert not verify(secret, body, "t=x,v1=y")


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    assert [backoff_s(n, base_s=30) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert backoff_s(30, base_s=30) == MAX_BACKOFF_S
