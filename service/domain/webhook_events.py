"""Job events for webhooks: which a final job raises, their payload, the outbox dispatch.

A job in a final state whose ``notified_at`` is NULL is dispatched once
(:func:`dispatch_job`): in one transaction its ``notified_at`` is set and one pending
``webhook_deliveries`` row is inserted per (enabled webhook of its team created before
the job finished, event it raises that the webhook subscribes to). The caller then
sends one ``mpq.deliver_webhook`` message per new row (:func:`notify_job` does both:
the worker that ends a job, the API when it cancels one, the workers' sweep); a lost
message is found again by the sweep (the row stays pending). Events (:func:`job_events`):

- succeeded → ``job.succeeded``, plus ``job.regressed`` when ``job.regression`` says
  ``"regressed": true``;
- failed → ``job.failed``; cancelled → ``job.cancelled``.

Retry schedule (:func:`backoff_s`): attempt ``n`` failed → the next one waits
``base · 2^(n-1)`` seconds, at most :data:`MAX_BACKOFF_S`.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from sqlalchemy.orm import Session

from service.db.base import utcnow
from service.db.models import Job, JobStatus, Model
from service.db.repos import deliveries as hooks
from service.db.session import end_reads
from service.queue import DELIVER_WEBHOOK, Send

__all__ = [
    "MAX_BACKOFF_S",
    "backoff_s",
    "dispatch_job",
    "job_events",
    "job_payload",
    "notify_job",
]

log = logging.getLogger("service.webhooks")

MAX_BACKOFF_S = 3600.0
"""The longest wait between two attempts at a delivery, in seconds."""


def backoff_s(attempt: int, *, base_s: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2...): base·2^(attempt-1), capped."""
    return min(base_s * 2.0 ** max(attempt - 1, 0), MAX_BACKOFF_S)


def job_events(job: Job) -> list[str]:
    """The events final job ``job`` raises (empty for an active job)."""
    if job.status == JobStatus.SUCCEEDED:
        regressed = bool(job.regression and job.regression.get("regressed"))
        return ["job.succeeded"] + (["job.regressed"] if regressed else [])
    if job.status == JobStatus.FAILED:
        return ["job.failed"]
    if job.status == JobStatus.CANCELLED:
        return ["job.cancelled"]
    return []


def _baseline(doc: Any) -> dict[str, Any] | None:
    if not isinstance(doc, dict):
        return None
    return {"metric": doc.get("metric"), "bytes": doc.get("bytes")}


def _chosen(doc: Any) -> dict[str, Any] | None:
    # ``bytes``: the packed weights payload (what the job reports); ``file_bytes``: model.mpq
    if not isinstance(doc, dict):
        return None
    return {
        "metric": doc.get("metric"),
        "bytes": doc.get("payload_bytes"),
        "file_bytes": doc.get("file_bytes"),
    }


def job_payload(job: Job, model: Model | None, delivery_id: int, *, event: str) -> dict[str, Any]:
    """The document posted for ``event`` of ``job``: what a pipeline needs to act on it.

    Names and numbers only -- ids, the model's name and version, targets, metrics and
    bytes, the error -- never a server path; ``job.url`` is the API path of the job.
    """
    result = job.result or {}
    baseline = _baseline(job.baseline if job.baseline else result.get("baseline"))
    chosen = _chosen(result.get("chosen"))
    ratio = None
    if baseline and chosen and baseline["bytes"] and chosen["bytes"]:
        ratio = round(baseline["bytes"] / chosen["bytes"], 4)  # = chosen.compression
    doc: dict[str, Any] = {
        "id": job.id,
        "status": job.status.value,
        "model": {
            "id": job.model_id,
            "name": None if model is None else model.name,
            "version": None if model is None else model.version,
        },
        "dataset_id": job.dataset_id,
        "schedule_id": job.schedule_id,
        "targets": (job.config or {}).get("targets"),
        "met_targets": result.get("met_targets"),
        "baseline": baseline,
        "chosen": chosen,
        "ratio": ratio,
        "regression": job.regression,
        "error": None
        if job.error_code is None
        else {"code": job.error_code, "message": job.error_message},
        "finished_at": None if job.finished_at is None else job.finished_at.isoformat(),
        "url": f"/v1/jobs/{job.id}",
    }
    return {
        "id": delivery_id,
        "event": event,
        "created_at": utcnow().isoformat(),
        "job": doc,
    }


def notify_job(session: Session, send: Send, *, job_id: int) -> list[int]:
    """Dispatch final job ``job_id`` to its webhooks (once) and send the new deliveries.

    Never raises: what fails here is left to the workers' sweep (the job stays
    un-notified, or its rows stay pending). Returns the new delivery ids.
    """
    try:
        ids = dispatch_job(session, job_id=job_id)
    except Exception as exc:
        session.rollback()
        log.warning("job %s: webhooks not dispatched (%s); the sweep will", job_id, exc)
        return []
    for delivery_id in ids:
        try:
            send(DELIVER_WEBHOOK, [delivery_id])
        except Exception as exc:
            log.warning("delivery %s not sent (%s); the sweep will", delivery_id, exc)
    return ids


def dispatch_job(session: Session, *, job_id: int) -> list[int]:
    """Hand final job ``job_id`` to its team's webhooks, once; return the new delivery ids.

    One transaction: ``notified_at`` set (only if NULL) and the delivery rows inserted,
    committed together. An active job, a job already notified, or a lost race with
    another dispatcher returns ``[]`` and changes nothing. Send the ids after this returns.
    """
    end_reads(session)
    if not hooks.mark_notified(session, job_id=job_id):
        session.rollback()
        return []
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None and job.finished_at is not None  # mark_notified saw it final
    model = session.get(Model, job.model_id)
    created = []
    for webhook in hooks.subscribers(session, team_id=job.team_id, before=job.finished_at):
        for event in job_events(job):
            if event not in webhook.events:
                continue
            delivery = hooks.add_delivery(
                session,
                webhook_id=webhook.id,
                event=event,
                job_id=job.id,
                payload=functools.partial(job_payload, job, model, event=event),
            )
            if delivery is not None:
                created.append(delivery)
    session.commit()
    return created
