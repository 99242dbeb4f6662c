"""Per-API-key rate limits: a token bucket per key, in the API process.

Each key may make ``rate_limit_burst`` requests at once and ``rate_limit_per_s`` per
second sustained; past that the API answers 429 ``rate_limited`` with ``Retry-After``
(whole seconds until the next request would pass). A bucket of size ``B`` refilled at
``r`` tokens per second holds ``min(B, t + r * dt)`` tokens ``dt`` seconds after it held
``t``; a request takes one token, or is refused when less than one is left.

The bucket is chosen before the key is checked (no database read): by the sha256 of
the bearer token when the request has one, else by the client's address (the docs, the
OpenAPI document, requests without a key). The health probes (``/healthz``,
``/readyz``) are never limited. Buckets live in one process: with several API
processes each enforces its own limit. At most :data:`MAX_BUCKETS` are kept, the least
recently used dropped first (an idle bucket is full, so dropping it changes nothing).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_response, http_status
from service.api.headers import relative_path
from service.errors import RateLimitedError

__all__ = ["EXEMPT_PATHS", "MAX_BUCKETS", "RateLimitMiddleware", "TokenBuckets", "bucket_key"]

EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
"""Paths never rate limited: orchestrators probe them on their own schedule."""

MAX_BUCKETS = 10_000
"""Buckets kept at most (least recently used dropped first)."""


class TokenBuckets:
    """Token buckets by key, all of one size and refill rate.

    Args:
        rate_per_s: tokens added to each bucket per second (``> 0``).
        burst: the size of each bucket, in tokens (``>= 1``); a new bucket is full.
        max_buckets: buckets kept at most.
        clock: seconds from a monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert rate_per_s > 0 and burst >= 1 and max_buckets >= 1
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_buckets = max_buckets
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token from ``key``'s bucket.

        Returns:
            ``0.0`` when the request may pass (a token was taken); otherwise the
            seconds until the bucket holds one token again (nothing taken).
        """
        now = self._clock()
        tokens, then = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[key] = (tokens, now)  # most recently used last
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait


def bucket_key(scope: Scope) -> str:
    """The bucket of request ``scope``: its bearer token's sha256, else its client address."""
    scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return "key:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
    client = scope.get("client")
    return f"addr:{client[0] if client else 'unknown'}"


class RateLimitMiddleware:
    """ASGI middleware answering 429 ``rate_limited`` to a key past its bucket.

    Args:
        app: the ASGI app to wrap.
        rate_per_s: the sustained rate per key (``Settings.rate_limit_per_s``).
        burst: the requests a key may make at once (``Settings.rate_limit_burst``).
    """

    def __init__(self, app: ASGIApp, *, rate_per_s: float, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets(rate_per_s=rate_per_s, burst=burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or relative_path(scope) in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(bucket_key(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        message = (
            f"too many requests with this API key: the limit is {self.buckets.rate_per_s:g} "
            f"per second, in bursts of up to {self.buckets.burst}; retry after "
            f"{retry_after} s"
        )
        response = error_response(
            RateLimitedError.code, message, status=http_status(RateLimitedError)
        )
        response.headers["Retry-After"] = str(retry_after)
        await response(scope, receive, send)
