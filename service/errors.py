"""The service's errors: records, names, requests and backends, beside the engine's.

They extend the one hierarchy rooted in :class:`engine.errors.MPQError`: each has a
stable ``code`` and a message saying what was wrong and how to fix it. The engine and
the search never raise these; the HTTP status of each code is derived from the class
in ``service/api/errors.py``.
"""

from __future__ import annotations

from engine.errors import InvalidDataError, MPQError

__all__ = [
    "BodyTooLargeError",
    "BrokerUnavailableError",
    "BusyError",
    "ConflictError",
    "CsrfError",
    "DatabaseBusyError",
    "DatabaseSchemaError",
    "DatabaseUnavailableError",
    "DatasetModelMismatchError",
    "InternalError",
    "InvalidAliasError",
    "InvalidNameError",
    "InvalidRequestError",
    "InvalidScheduleError",
    "InvalidSettingsError",
    "MethodNotAllowedError",
    "NotFoundError",
    "QueueUnavailableError",
    "QuotaExceededError",
    "RateLimitedError",
    "UnauthorizedError",
    "UploadTimeoutError",
    "UploadTooLargeError",
    "WebhookEventsError",
    "WebhookSecretError",
    "WebhookUrlError",
]


class NotFoundError(MPQError):
    """A named or numbered record (team, model, job...) does not exist, or not for this team."""

    code = "not_found"


class ConflictError(MPQError):
    """The record's state or a unique name forbids the change (a taken name, a finished job)."""

    code = "conflict"


class InvalidNameError(MPQError):
    """A name (of a team, key, model...) is empty, too long or uses characters not allowed."""

    code = "invalid_name"


class UnauthorizedError(MPQError):
    """A request to the API carries no API key, or one that is unknown or revoked."""

    code = "unauthorized"


class CsrfError(MPQError):
    """A dashboard form was sent without the sign-in's CSRF token, or with another one."""

    code = "csrf_failed"


class InvalidRequestError(MPQError):
    """An API request is malformed: a missing or ill-typed field, or an unreadable body."""

    code = "invalid_request"


class MethodNotAllowedError(MPQError):
    """The route exists but does not answer this HTTP method."""

    code = "method_not_allowed"


class UploadTooLargeError(MPQError):
    """An uploaded file exceeds the service's ``max_upload_bytes``."""

    code = "upload_too_large"


class BodyTooLargeError(MPQError):
    """A request body other than a file upload (a JSON body) exceeds ``max_json_bytes``."""

    code = "body_too_large"


class RateLimitedError(MPQError):
    """An API key sent more requests than ``rate_limit_per_s`` and ``rate_limit_burst`` allow."""

    code = "rate_limited"


class UploadTimeoutError(MPQError):
    """An upload's body stalled (``upload_read_timeout_s``) or crawled (``upload_min_rate_bps``)."""

    code = "upload_timeout"


class BusyError(MPQError):
    """The service is at capacity (every upload or import slot taken); retry later.

    Answered with ``Retry-After: retry_after_s``.
    """

    code = "busy"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DatabaseBusyError(BusyError):
    """Every connection of the API's database pool stayed taken for ``db_pool_timeout_s``."""

    code = "database_busy"


class InternalError(MPQError):
    """A bug, not the user's input: logged with its traceback, reported without it."""

    code = "internal"


class InvalidSettingsError(MPQError):
    """An ``MPQ_*`` setting has a value the service cannot run with."""

    code = "invalid_settings"


class DatabaseSchemaError(MPQError):
    """The database is not migrated to the schema this code expects (run `mpq db upgrade`)."""

    code = "database_schema"


class DatabaseUnavailableError(MPQError):
    """The service database cannot be reached."""

    code = "database_unavailable"


class QueueUnavailableError(MPQError):
    """The job queue (the Celery broker) cannot be reached to enqueue work."""

    code = "queue_unavailable"


class BrokerUnavailableError(MPQError):
    """The Celery broker cannot be reached within the probe's timeout (readiness, metrics)."""

    code = "broker_unavailable"


class QuotaExceededError(MPQError):
    """The team is at one of its quotas (active jobs, storage); the message names which."""

    code = "quota_exceeded"


class DatasetModelMismatchError(InvalidDataError):
    """A job pairs a model with a dataset validated for a model with other inputs."""

    code = "dataset_model_mismatch"


class InvalidAliasError(MPQError):
    """A model alias is not 1 to 64 of ``a-z 0-9 _ -``, is all digits, or is ``latest``."""

    code = "invalid_alias"


class InvalidScheduleError(MPQError):
    """A schedule's cron expression does not parse, or its time zone is not an IANA name."""

    code = "invalid_schedule"


class WebhookUrlError(InvalidRequestError):
    """A webhook ``url`` is not an absolute http(s) URL with a host, no credentials, no
    fragment, or names an address the service may not send to (:mod:`service.outbound`)."""

    code = "invalid_webhook_url"


class WebhookEventsError(InvalidRequestError):
    """A webhook's ``events`` is empty or names an event MPQ does not send."""

    code = "invalid_webhook_events"


class WebhookSecretError(InvalidRequestError):
    """A webhook ``secret`` is not 16 to 255 printable ASCII characters."""

    code = "invalid_webhook_secret"
