"""The service's one configuration object, read from ``MPQ_*`` environment variables.

Every knob of the API, the workers and the ``mpq`` command line lives on :class:`Settings`;
code reaches it through :func:`get_settings` (FastAPI routes through a ``SettingsDep``
dependency, so tests override it instead of editing the environment).

Defaults are the embedded, no-server setup: everything under one data directory,
``$XDG_DATA_HOME/mpq`` (``~/.local/share/mpq`` when ``XDG_DATA_HOME`` is unset). A
per-user directory rather than ``./var`` so that ``mpq db upgrade``, ``mpq up`` and
``mpq admin`` see the same database whatever directory they are started from, and a
clone of the repository is never littered with state. Under it:

- ``mpq.db``: the SQLite database (``database_url``),
- ``broker.db``: the Celery broker, kombu's SQLAlchemy transport on SQLite
  (``broker_url``),
- ``blobs/``: uploaded models, datasets and job artifacts (``blob_dir``).

Production sets ``MPQ_DATABASE_URL=postgresql+psycopg://...`` and
``MPQ_BROKER_URL=redis://...`` (and usually ``MPQ_BLOB_DIR``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from service.errors import InvalidSettingsError
from service.outbound import IPNetwork, parse_networks

__all__ = ["STUDY_SCHEMA", "Settings", "default_cache_dir", "default_data_dir", "get_settings"]

STUDY_SCHEMA = "optuna"
"""PostgreSQL schema of the jobs' Optuna studies (see ``Settings.study_url``)."""


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/mpq``, or ``~/.local/share/mpq`` when ``XDG_DATA_HOME`` is unset."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mpq"


def default_cache_dir() -> Path:
    """``~/.cache/mpq``: where ``mpq search`` keeps measured layer sensitivities."""
    return Path.home() / ".cache" / "mpq"


class Settings(BaseSettings):
    """MPQ service settings; each field ``x`` is read from the variable ``MPQ_X``.

    ``database_url``, ``broker_url`` and ``blob_dir`` left empty are derived from
    ``data_dir`` after validation, so setting ``MPQ_DATA_DIR`` alone moves all state.

    Attributes:
        data_dir: directory of the embedded defaults (made absolute).
        database_url: SQLAlchemy URL of the service database (also Optuna's storage).
        broker_url: Celery broker URL.
        study_url: SQLAlchemy URL of the jobs' Optuna studies. Optuna keeps its own
            Alembic revision in ``alembic_version``, the table the service's migrations
            use, so the studies need a database (or PostgreSQL schema) of their own:
            ``studies.db`` next to a SQLite database; on PostgreSQL the service database
            with ``search_path`` set to the schema ``optuna`` (created by the workers).
        blob_dir: directory of uploaded files and artifacts (made absolute).
        max_upload_bytes: largest model or dataset upload accepted, in bytes.
        max_concurrent_uploads: uploads the API receives and processes at once; one
            more is answered 503 ``busy`` (with ``Retry-After``) before its body is read.
        max_concurrent_imports: uploaded files imported or validated at once (each model
            import runs a sandboxed child process of a few hundred MB); an upload waits up
            to ``import_wait_s`` for one, then is answered 503 ``busy``.
        import_wait_s: how long a received upload waits for an import slot, in seconds.
        upload_read_timeout_s: seconds an upload's body may send nothing before it is
            answered 408 ``upload_timeout`` and its partial file removed.
        upload_min_rate_bps: the lowest average rate, in bytes/s, of an upload that has
            run for ``upload_read_timeout_s``; a slower one is answered 408
            ``upload_timeout`` (so a byte every few seconds cannot hold a slot). 0: none.
        busy_retry_after_s: the ``Retry-After`` (seconds) of a 503 ``busy`` answer.
        db_pool_size: database connections the API keeps open.
        db_max_overflow: connections the API may open beyond ``db_pool_size`` under load.
        db_pool_timeout_s: how long a request waits for a free connection before it is
            answered 503 ``database_busy``, in seconds.
        max_dataset_bytes: largest decoded size of a dataset upload, in bytes: the bytes
            its arrays declare (an ``.npz`` member's shape and dtype, a safetensors
            header's offsets), checked before anything is decompressed. A small
            compressed file may declare gigabytes; it is refused with ``data_too_large``
            (422). Validating an accepted file takes about twice this much memory.
        max_parallelism: cap on a job's trial-runner tasks, whatever the job asks for.
        api_host: interface the API binds to.
        api_port: TCP port the API listens on.
        queue: name of the broker queue jobs are sent to and workers consume.
        broker_polling_interval_s: how often a worker polls a broker that cannot push
            (the embedded SQLAlchemy transport), in seconds.
        max_trials: cap on a job's trial budget.
        heartbeat_s: how often a task working on a job writes the job's heartbeat,
            and a trial runner its running trial's, in seconds.
        grace_s: seconds without a heartbeat after which a job's tasks, or a running
            trial's runner, count as dead: the job is resumed, the trial retried.
            Several ``heartbeat_s``, so that a busy machine is not declared dead.
        recovery_interval_s: how often each worker looks for jobs to resume, in seconds.
        trust_uploads: import ``.pt2`` files without the bubblewrap sandbox
            (``MPQ_TRUST_UPLOADS=1``; only for files you trust, where bubblewrap is missing).
        cache_dir: where ``mpq search`` caches layer sensitivities, per model and data
            sha256 (``~/.cache/mpq``).
        beat_interval_s: how often ``mpq beat`` reads the schedules and fires those due,
            in seconds (at most 60: a cron has minute resolution).
        debug: print the traceback of an unexpected internal error in the CLI
            (``MPQ_DEBUG=1``).
        max_json_bytes: largest request body accepted outside file uploads (JSON), in
            bytes; a larger one is refused with 413 ``body_too_large`` before it is read.
        metrics_token: the bearer token ``GET /metrics`` requires; empty (the default)
            turns ``/metrics`` off (404).
        rate_limit_per_s: requests per second each API key may make, sustained (a token
            bucket per key, in each API process); ``0`` turns rate limiting off.
        rate_limit_burst: requests a key may make at once above the sustained rate (the
            bucket's size).
        max_active_jobs_per_team: most queued, preparing and running jobs a team may
            have at once; one more answers 429 ``quota_exceeded``.
        max_team_storage_bytes: most bytes a team's models, datasets and job artifacts
            may take together; an upload that would pass it answers 429
            ``quota_exceeded``.
        session_ttl_s: how long a dashboard sign-in lasts, in seconds (signing out, or
            revoking the key it was made with, ends it sooner).
        regression_bytes_tolerance: relative growth of a scheduled job's chosen file over
            its schedule's last run at the same target that counts as a regression.
        regression_metric_tolerance: worsening of its metric (in the metric's units) that
            counts as one (:mod:`service.domain.regression`).
        schedule_keep_runs: how many of each schedule's latest jobs are kept; older ones
            are deleted with their trials and artifacts unless their model version has an
            alias (:mod:`service.domain.retention`).
        webhook_timeout_s: the hard wall-clock limit of one webhook delivery attempt
            (connect, send, response headers and body together), in seconds.
        webhook_max_attempts: attempts at a webhook delivery before it is marked failed.
        webhook_backoff_s: the wait before a delivery's second attempt, in seconds; it
            doubles after each failed attempt (capped at an hour).
        webhook_allowed_networks: networks webhooks may reach besides public addresses
            (comma-separated, as in ``10.20.0.0/16,192.168.1.7``); empty (the default):
            none -- loopback, private and link-local addresses are refused
            (:mod:`service.outbound`).
    """

    model_config = SettingsConfigDict(env_prefix="MPQ_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str = ""
    broker_url: str = ""
    study_url: str = ""
    blob_dir: Path | None = None
    max_upload_bytes: int = Field(default=1 << 30, gt=0)
    max_concurrent_uploads: int = Field(default=8, ge=1)
    max_concurrent_imports: int = Field(default=2, ge=1)
    import_wait_s: float = Field(default=20.0, ge=0)
    upload_read_timeout_s: float = Field(default=30.0, gt=0)
    upload_min_rate_bps: float = Field(default=1024.0, ge=0)
    busy_retry_after_s: int = Field(default=10, ge=1)
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    max_dataset_bytes: int = Field(default=512 << 20, gt=0)
    max_parallelism: int = Field(default=4, ge=1)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    queue: str = Field(default="mpq", min_length=1)
    broker_polling_interval_s: float = Field(default=0.05, gt=0)
    max_trials: int = Field(default=10_000, ge=1)
    heartbeat_s: float = Field(default=5.0, gt=0)
    grace_s: float = Field(default=60.0, gt=0)
    recovery_interval_s: float = Field(default=15.0, gt=0)
    trust_uploads: bool = False
    cache_dir: Path = Field(default_factory=default_cache_dir)
    debug: bool = False
    max_json_bytes: int = Field(default=64 * 1024, gt=0)
    metrics_token: str = ""
    rate_limit_per_s: float = Field(default=50.0, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    max_active_jobs_per_team: int = Field(default=20, ge=1)
    max_team_storage_bytes: int = Field(default=50 << 30, ge=1)
    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    regression_bytes_tolerance: float = Field(default=0.02, ge=0, le=100)
    regression_metric_tolerance: float = Field(default=0.005, ge=0, le=1e6)
    schedule_keep_runs: int = Field(default=30, ge=1)
    beat_interval_s: float = Field(default=5.0, gt=0, le=60)
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_backoff_s: float = Field(default=30.0, gt=0)
    webhook_allowed_networks: str = ""

    @field_validator("trust_uploads", "debug", mode="before")
    @classmethod
    def _empty_is_false(cls, value: object) -> object:
        # ``MPQ_DEBUG=`` (set but empty) has always meant off.
        return False if value == "" else value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        return ",".join(str(n) for n in parse_networks(value))

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        self.cache_dir = self.cache_dir.expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'mpq.db'}"
        if not self.study_url:
            self.study_url = _study_url(self.database_url, self.data_dir)
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir / 'broker.db'}"
        blobs = self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"
        self.blob_dir = blobs.expanduser().resolve()
        if self.grace_s <= 2 * self.heartbeat_s:
            raise ValueError(
                f"MPQ_GRACE_S ({self.grace_s}) must exceed twice MPQ_HEARTBEAT_S "
                f"({self.heartbeat_s}), or live tasks would be declared dead"
            )
        return self

    @property
    def webhook_networks(self) -> tuple[IPNetwork, ...]:
        """``webhook_allowed_networks``, parsed."""
        return parse_networks(self.webhook_allowed_networks)

    @property
    def blobs(self) -> Path:
        """``blob_dir``, never ``None`` once validated (typed for callers)."""
        assert self.blob_dir is not None  # set by _derive_defaults
        return self.blob_dir


def _study_url(database_url: str, data_dir: Path) -> str:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "") if url.database not in (None, "", ":memory:") else None
        folder = data_dir if database is None else database.parent
        return f"sqlite:///{folder / 'studies.db'}"
    query = dict(url.query) | {"options": f"-csearch_path={STUDY_SCHEMA}"}
    return url.set(query=query).render_as_string(hide_password=False)


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once and cached.

    Raises:
        InvalidSettingsError: an ``MPQ_*`` variable has an unusable value (named).
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"MPQ_{'_'.join(str(p) for p in e['loc']).upper()}: " if e["loc"] else "")
            + str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors()
        )
        raise InvalidSettingsError(f"invalid settings: {problems}") from None
