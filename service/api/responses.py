"""The error responses routes declare in the OpenAPI document, from one table.

Every error has the body :class:`~service.schemas.ErrorResponse`; what differs by route
is which statuses it can really answer. Routers and route decorators pick theirs with
:func:`errors` (``responses=errors(401, 422)``) instead of spelling the dicts out, so
the document says the same thing, in the same words, everywhere -- and schemathesis
(``tests/test_api_fuzz.py``) holds the server to it: an answered status that is not
declared, or a declared body that does not match, fails the test.

A status goes on a route only when the route can answer it: every route under ``/v1``
can answer 401 (no key), 422 (a parameter), 429 (its key's rate limit) and 503 (no free
database connection); 404 where the path names a row or the body refers to one, 408
where an upload can stall, 409 where a state forbids the change, 413 where a body or an
upload can pass its limit. 500 is never declared: it is the bug the fuzzing looks for.
"""

from __future__ import annotations

from typing import Any

from service.schemas import ErrorResponse

__all__ = ["ERROR_RESPONSES", "errors"]

ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    401: {
        "model": ErrorResponse,
        "description": "`unauthorized`: no `Authorization: Bearer <key>`, or an unknown or "
        "revoked key",
    },
    404: {
        "model": ErrorResponse,
        "description": "`not_found`: no such row in the caller's team",
    },
    408: {
        "model": ErrorResponse,
        "description": "`upload_timeout`: the upload's body stalled or arrived too slowly",
    },
    409: {
        "model": ErrorResponse,
        "description": "`conflict`: the resource's state does not allow the change",
    },
    413: {
        "model": ErrorResponse,
        "description": "`upload_too_large` or `body_too_large`: the upload or the JSON body "
        "passes the server's size limit",
    },
    422: {
        "model": ErrorResponse,
        "description": "`invalid_request` (a parameter or body field), or the error code of "
        "the content that was refused",
    },
    429: {
        "model": ErrorResponse,
        "description": "`rate_limited` (retry after the `Retry-After` header's seconds) or "
        "`quota_exceeded` (the team's active jobs or storage)",
    },
    503: {
        "model": ErrorResponse,
        "description": "`busy` or `database_busy` (retry after `Retry-After`), or a backend "
        "(database, queue, importer sandbox) is unavailable; retry later",
    },
}
"""Every error status a route may declare, with its one description."""


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries of ``statuses`` (each a key of :data:`ERROR_RESPONSES`).

    Raises:
        KeyError: a status without an entry (add it to the table first).
    """
    return {status: ERROR_RESPONSES[status] for status in statuses}
