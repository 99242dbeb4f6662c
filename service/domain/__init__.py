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
from service.domain.webhook_events import dispatch_job
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
    "dispatch_job",
    "job_inputs",
    "job_spec",
    "job_trials",
    "submit_job",
]
