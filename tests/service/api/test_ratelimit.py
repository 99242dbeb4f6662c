"""The token buckets behind the per-key rate limits, on a clock the test moves."""

from __future__ import annotations

import pytest

from service.api.ratelimit import TokenBuckets, bucket_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=2.0, burst=3, clock=clock)
    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k") == pytest.approx(0.5)  # 1 token at 2 per second
    clock.now += 0.25  # half a token
    assert buckets.take("k") == pytest.approx(0.25)
    clock.now += 0.25
    assert buckets.take("k") == 0.0
    assert buckets.take("k") == pytest.approx(0.5)
    clock.now += 60  # refills to the burst, no further
    assert [buckets.take("k") for _ in range(4)][-1] == pytest.approx(0.5)


def test_keys_have_their_own_buckets_and_the_oldest_is_dropped() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_s=1.0, burst=1, max_buckets=2, clock=clock)
    assert buckets.take("a") == 0.0 and buckets.take("b") == 0.0
    assert buckets.take("a") == pytest.approx(1.0)  # a is empty; b is untouched
    assert buckets.take("c") == 0.0  # a third key: b, least recently used, is dropped
    assert buckets.take("b") == 0.0  # a new, full bucket
    assert buckets.take("c") == pytest.approx(1.0)


def test_the_bucket_key() -> None:
    def scope(auth: str | None) -> dict[str, object]:
        headers = [] if auth is None else [(b"authorization", auth.encode())]
        return {"type": "http", "headers": headers, "client": ("10.0.0.7", 5555)}

    key = bucket_key(scope("Bearer mpq_secret"))
    assert key.startswith("key:") and "mpq_secret" not in key
    assert bucket_key(scope("bearer  mpq_secret")) == key
    assert bucket_key(scope("Bearer other")) != key
    assert bucket_key(scope(None)) == bucket_key(scope("Basic abc")) == "addr:10.0.0.7"
