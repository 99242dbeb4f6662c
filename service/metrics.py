"""Prometheus metrics of the API: what ``GET /metrics`` exposes, and how it is measured.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (``app.state.metrics``,
made by :func:`install_metrics`), so that several apps in one process never share
series. It holds two kinds of metric:

- measured as requests pass, by :class:`RequestMetricsMiddleware`:
  ``mpq_http_request_duration_seconds{method, route, status}``, a histogram whose
  ``route`` is the route template (``/v1/jobs/{job_id}``), never the raw path, so that
  its cardinality is bounded; requests that match no route are ``route="other"``;
- read at scrape time, by :class:`ServiceCollector`: ``mpq_jobs{state}`` (job rows by
  status, all teams, every state even at 0), ``mpq_trials_total`` (trials done over
  all jobs: a counter, so trials per second is PromQL's ``rate(mpq_trials_total[5m])``;
  a deleted job lowers the sum, which ``rate()`` reads as a counter reset),
  ``mpq_queue_depth{queue}`` (messages waiting in the broker queue) and
  ``mpq_broker_up`` / ``mpq_database_up`` (1 or 0); under ``mpq up``,
  ``mpq_process_restarts_total{process}`` (:mod:`service.supervision`).

No series is labelled by team, nor counts one team's rows: the numbers are the
service's totals, and ``/metrics`` itself needs the metrics token (see
:mod:`service.api.routes.metrics`).

A scrape never fails because a backend is down: an unreachable broker (probed with a
:data:`BROKER_TIMEOUT_S` bound) drops the queue-depth sample and reports
``mpq_broker_up 0``; an unreachable database drops the job samples and reports
``mpq_database_up 0``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from celery import Celery
from fastapi import FastAPI
from kombu.exceptions import OperationalError as KombuOperationalError
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.db.models import Job, JobStatus
from service.errors import BrokerUnavailableError
from service.supervision import restarts_family

__all__ = [
    "BROKER_TIMEOUT_S",
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "RequestMetricsMiddleware",
    "ServiceCollector",
    "broker_queue_depth",
    "install_metrics",
    "job_stats",
    "render",
    "route_template",
]

log = logging.getLogger("service.metrics")

BROKER_TIMEOUT_S = 2.0
"""How long a broker probe may take to connect or answer, in seconds."""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Media type of :func:`render`'s output: the Prometheus text format 0.0.4."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the request-latency histogram; uploads can take a minute."""

OTHER_ROUTE = "other"


def broker_queue_depth(queue: Celery, name: str, *, timeout_s: float = BROKER_TIMEOUT_S) -> int:
    """The number of messages waiting in broker queue ``name`` (delivered ones excluded).

    One connection attempt, bounded by ``timeout_s`` (connect and, on Redis, each
    command), then a passive ``queue_declare``. A queue the broker does not know yet
    (Redis deletes a list once it is empty) holds 0 messages.

    Args:
        queue: the Celery app whose broker to ask (:func:`service.queue.make_celery`).
        name: the queue's name (``settings.queue``).
        timeout_s: the bound on connecting and on each broker command, in seconds.

    Returns:
        The queue's message count, ``>= 0``.

    Raises:
        BrokerUnavailableError: the broker cannot be reached within ``timeout_s``.
    """
    with queue.connection_for_read(connect_timeout=timeout_s) as conn:
        if conn.transport.driver_type == "redis":
            # redis-py waits on sockets without limit unless told; the channel reads
            # these when it is created, below.
            conn.transport_options.update(
                socket_timeout=timeout_s, socket_connect_timeout=timeout_s
            )
        try:
            conn.ensure_connection(max_retries=0, timeout=timeout_s)
            try:
                count = conn.default_channel.queue_declare(queue=name, passive=True)
            except conn.channel_errors:
                return 0  # the passive declare's NOT_FOUND: no message waits (Redis) or ever did
            return int(count.message_count)
        except (KombuOperationalError, *conn.connection_errors) as exc:
            raise BrokerUnavailableError(
                f"cannot reach the broker at {conn.as_uri()} within {timeout_s:g} s "
                f"({type(exc).__name__}: {exc}); check MPQ_BROKER_URL and that the broker "
                "is up"
            ) from None


def job_stats(engine: Engine) -> tuple[dict[JobStatus, int], int]:
    """Job rows by status (every status, 0 where none) and the trials done over all jobs.

    Args:
        engine: the service database.

    Returns:
        ``(counts, trials)``: ``counts[s]`` jobs are in status ``s``, across all teams;
        ``trials`` is ``sum(jobs.trials_done)``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database cannot be read.
    """
    counts = dict.fromkeys(JobStatus, 0)
    with engine.connect() as conn:
        for status, n in conn.execute(select(Job.status, func.count()).group_by(Job.status)):
            counts[JobStatus(status)] = int(n)
        trials = conn.scalar(select(func.coalesce(func.sum(Job.trials_done), 0)))
    return counts, int(trials or 0)


class ServiceCollector(Collector):
    """The metrics read at scrape time from the database and the broker.

    Args:
        state: the app's ``state``; ``engine``, ``queue`` and ``settings`` are read from
            it at each scrape (the first two exist only while the app runs).
    """

    def __init__(self, state: State) -> None:
        self._state = state

    def describe(self) -> Iterator[Metric]:
        """The metric families :meth:`collect` yields, without samples (no I/O)."""
        yield from self._families()
        yield restarts_family(None)

    def collect(self) -> Iterator[Metric]:
        """Query the database and the broker; yield what could be read, and ``*_up``."""
        jobs, trials, depth, broker_up, database_up = self._families()
        try:
            counts, done = job_stats(self._state.engine)
        except SQLAlchemyError as exc:
            cause = str(exc).partition("\n")[0]  # SQLAlchemy appends the SQL and a link
            log.warning("metrics: cannot read the jobs table (%s: %s)", type(exc).__name__, cause)
            database_up.add_metric([], 0)
        else:
            database_up.add_metric([], 1)
            for status, n in counts.items():
                jobs.add_metric([status.value], n)
            trials.add_metric([], done)
        name = self._state.settings.queue
        try:
            messages = broker_queue_depth(self._state.queue, name)
        except BrokerUnavailableError as exc:
            log.warning("metrics: %s", exc.message)
            broker_up.add_metric([], 0)
        else:
            broker_up.add_metric([], 1)
            depth.add_metric([name], messages)
        yield from (jobs, trials, depth, broker_up, database_up)
        yield restarts_family(self._state.settings.data_dir)  # written by `mpq up`

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
    ]:
        return (
            GaugeMetricFamily("mpq_jobs", "Jobs by state, all teams.", labels=["state"]),
            CounterMetricFamily(
                "mpq_trials",
                "Search trials done over all jobs (sum of jobs.trials_done); "
                "trials per second: rate(mpq_trials_total[5m]).",
            ),
            GaugeMetricFamily(
                "mpq_queue_depth",
                "Messages waiting in the broker queue (absent while the broker is down).",
                labels=["queue"],
            ),
            GaugeMetricFamily("mpq_broker_up", "1 if the broker answered this scrape, else 0."),
            GaugeMetricFamily("mpq_database_up", "1 if the database answered this scrape, else 0."),
        )


class RequestMetricsMiddleware:
    """ASGI middleware timing every HTTP request into ``histogram``.

    Labels: ``method``, ``route`` (the matched route's template, :data:`OTHER_ROUTE`
    when none matched) and ``status`` (500 when the app raised before answering). The
    duration runs from the request's arrival to the end of its response body.

    Args:
        app: the ASGI app to wrap.
        histogram: a histogram labelled ``method``, ``route``, ``status``.
    """

    def __init__(self, app: ASGIApp, *, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.histogram.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - start
            )


def route_template(scope: Scope) -> str:
    """The template of the route that handled request ``scope`` (:data:`OTHER_ROUTE` if none).

    The router stores the matched route in ``scope["route"]``. FastAPI keeps a route
    included under a prefix with its own template (``/jobs/{job_id}`` under ``/v1``),
    so the prefix is taken from the request path: the shortest ``/``-aligned head whose
    remainder the route matches. MPQ's router prefixes are static, so this head never
    carries a path parameter's value.

    Args:
        scope: the ASGI scope of an HTTP request, after the app handled it.

    Returns:
        The full template, e.g. ``/v1/jobs/{job_id}``, or ``"other"``.
    """
    route = scope.get("route")
    template, regex = getattr(route, "path", None), getattr(route, "path_regex", None)
    if not isinstance(template, str) or regex is None:
        return OTHER_ROUTE
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    for i, char in enumerate(path):
        if char == "/" and regex.match(path[i:]):
            return path[:i] + template
    return template


def install_metrics(app: FastAPI) -> CollectorRegistry:
    """Give ``app`` its own registry (``app.state.metrics``) and the timing middleware.

    Args:
        app: the app, before it starts (middleware cannot be added later).

    Returns:
        The registry that :func:`render` turns into the ``/metrics`` body.
    """
    registry = CollectorRegistry()
    histogram = Histogram(
        "mpq_http_request_duration_seconds",
        "HTTP request latency by method, route template and status.",
        labelnames=("method", "route", "status"),
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    registry.register(ServiceCollector(app.state))
    app.add_middleware(RequestMetricsMiddleware, histogram=histogram)
    app.state.metrics = registry
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition (:data:`CONTENT_TYPE`) of ``registry``, scraped now."""
    return generate_latest(registry)
