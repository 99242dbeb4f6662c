"""One HTTP POST under a hard wall-clock deadline, for webhook deliveries.

httpx's timeouts are per phase and per socket operation: a receiver that drips a byte
of its headers every second never trips a 5 s read timeout and can hold a worker for
as long as it likes. Here every socket operation of the attempt -- connect, each
write, each read, TLS included -- gets ``min(its timeout, time left)`` from one
deadline, through a network backend that wraps httpcore's (:class:`_DeadlineBackend`);
once the deadline has passed the next operation raises at once. So an attempt ends by
``timeout_s`` after it began, whatever the receiver does. Name resolution is held to
the same deadline: the system resolver takes no timeout, so it runs on one of
:data:`RESOLVERS` threads and the attempt stops waiting for it when the time is up (a
hung lookup keeps its thread, never the worker; the pool bounds how many can hang).

No redirect is followed (a 3xx is an answer, not a success), no proxy or ``.netrc`` is
read from the environment, and at most :data:`BODY_CAP` bytes of the answer are read.

The host is resolved here, every address it resolves to must be public or inside the
allowed networks (:func:`service.outbound.refusal`), and the connection goes to those
addresses (the first that answers): the address checked is the address reached,
whatever the name resolves to a moment later. TLS still verifies the certificate against the name.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from service.outbound import IPAddress, IPNetwork, ip_literal, refusal

__all__ = ["BODY_CAP", "RESOLVERS", "Answer", "post"]

BODY_CAP = 4096
"""Bytes of a receiver's answer read at most (the rest is never downloaded)."""

RESOLVERS = 4
"""Threads resolving receivers' names; a lookup waits for one at most until its deadline."""

_resolver = ThreadPoolExecutor(max_workers=RESOLVERS, thread_name_prefix="webhook-dns")


@dataclass(frozen=True)
class Answer:
    """How an attempt ended: an HTTP ``status`` (with the start of the body), or ``error``."""

    status: int | None
    body: bytes = b""
    error: str | None = None


class _Deadline:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.at = time.monotonic() + timeout_s

    def left(self, timeout: float | None, kind: type[Exception]) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise kind(f"no answer within {self.timeout_s:g} s")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self.inner, self.deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self.deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self.deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        left = self.deadline.left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self.inner.start_tls(ssl_context, server_hostname, left), self.deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    def __init__(self, deadline: _Deadline, allowed: Sequence[IPNetwork]) -> None:
        self.deadline, self.allowed = deadline, allowed

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: httpcore.ConnectError | None = None
        for address in _checked_addresses(host, port, self.allowed, self.deadline):
            left = self.deadline.left(timeout, httpcore.ConnectTimeout)
            try:
                stream = super().connect_tcp(address, port, left, local_address, socket_options)
            except httpcore.ConnectError as exc:  # as create_connection: the next address
                error = exc
                continue
            return _DeadlineStream(stream, self.deadline)
        assert error is not None  # _checked_addresses returns one address or more
        raise error


def _checked_addresses(
    host: str, port: int, allowed: Sequence[IPNetwork], deadline: _Deadline
) -> list[str]:
    """The addresses ``host`` resolves to, in the resolver's order, if all may be reached.

    Raises:
        httpcore.ConnectError: it does not resolve, or resolves to an address refused
            (a name with one private address among public ones is refused whole).
        httpcore.ConnectTimeout: it did not resolve before the deadline.
    """
    literal = ip_literal(host)
    addresses: list[IPAddress]
    if literal is not None:
        addresses = [literal]
    else:
        lookup = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            found = lookup.result(deadline.left(None, httpcore.ConnectTimeout))
        except FutureTimeout:
            lookup.cancel()  # still queued: never runs; running: its thread finishes alone
            raise httpcore.ConnectTimeout(
                f"{host} did not resolve within {deadline.timeout_s:g} s"
            ) from None
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from None
        addresses = [a for info in found if (a := ip_literal(str(info[4][0]))) is not None]
    if not addresses:
        raise httpcore.ConnectError(f"{host} does not resolve")
    for address in addresses:
        why = refusal(address, allowed)
        if why is not None:
            named = f"{address}" if literal == address else f"{host} ({address})"
            raise httpcore.ConnectError(
                f"refused: {named} is {why}; allow its network on the service "
                "(MPQ_WEBHOOK_ALLOWED_NETWORKS) or use a public address"
            )
    return list(dict.fromkeys(str(a) for a in addresses))


def _transport(deadline: _Deadline, allowed: Sequence[IPNetwork]) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(trust_env=False, retries=0)
    # httpx takes no network backend; its pool is rebuilt around ours (same defaults).
    transport._pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=1,
        network_backend=_DeadlineBackend(deadline, allowed),
    )
    return transport


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    allowed_networks: Sequence[IPNetwork],
) -> Answer:
    """POST ``body`` to ``url``; the answer's status and first :data:`BODY_CAP` bytes.

    ``allowed_networks``: the non-public networks the host may resolve into (see the
    module docstring); an address outside them and not public is never connected to.

    Never raises for the receiver's sake: a refused connection, a timeout, a broken
    answer become ``Answer(None, error=...)`` with a short message (no traceback).
    """
    deadline = _Deadline(timeout_s)
    try:
        with (
            httpx.Client(
                transport=_transport(deadline, allowed_networks),
                timeout=timeout_s,
                follow_redirects=False,
                trust_env=False,
            ) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            return Answer(response.status_code, _start_of(response))
    except httpx.HTTPError as exc:
        return Answer(None, error=_short(exc))


def _start_of(response: httpx.Response) -> bytes:
    """The first :data:`BODY_CAP` bytes of the body (what arrives before the deadline)."""
    got = bytearray()
    try:
        for chunk in response.iter_raw():
            got += chunk
            if len(got) >= BODY_CAP:
                break
    except httpx.HTTPError:
        pass  # the status is the answer; a body cut short changes nothing
    return bytes(got[:BODY_CAP])


def _short(exc: httpx.HTTPError) -> str:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{kind}: {text}"[:200] if text else kind
