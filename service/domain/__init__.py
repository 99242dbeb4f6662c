"""The service's domain: what the API, the dashboard, a schedule and the CLI all do.

Keyword-only functions that take plain values -- a file path and a name, a
:class:`~search.JobSpec` -- never an HTTP schema or request, and own their
transaction: each commits what it made, or leaves nothing behind.
"""

from __future__ import annotations

from service.domain.datasets import add_dataset
from service.domain.jobs import (
    JobInputs,
    cancel_job,
    complete_job,
    job_inputs,
    job_spec,
    job_trials,
    submit_job,
)
from service.domain.models import add_model
from service.domain.registry import delete_alias, model_versions, resolve_model, set_alias
from service.domain.schedules import (
    create_schedule,
    fire_due,
    fire_schedule,
    schedule_runs,
    update_schedule,
)
from service.domain.webhook_events import dispatch_job, notify_job
from service.domain.webhooks import EVENTS, add_webhook, change_webhook

__all__ = [
    "EVENTS",
    "JobInputs",
    "add_dataset",
    "add_model",
    "add_webhook",
    "cancel_job",
    "change_webhook",
    "complete_job",
    "create_schedule",
    "delete_alias",
    "dispatch_job",
    "fire_due",
    "fire_schedule",
    "job_inputs",
    "job_spec",
    "job_trials",
    "model_versions",
    "notify_job",
    "resolve_model",
    "schedule_runs",
    "set_alias",
    "submit_job",
    "update_schedule",
]
