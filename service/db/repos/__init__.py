"""Repositories, one module per resource: the only code that writes rows.

Names say what a miss does: ``get_x`` raises :class:`~service.errors.NotFoundError`,
``find_x`` returns ``None``, ``list_x`` returns a list, ``count_x`` an int (the pattern
is written once, in :class:`~service.db.repos._scoped.Scoped`). Functions that create
or change rows own their transaction and commit before returning.
"""

from __future__ import annotations

from service.db.repos._names import check_label
from service.db.repos._scoped import MAX_ID
from service.db.repos.artifacts import ArtifactFile, find_artifact, get_artifact, list_artifacts
from service.db.repos.blobs import blob_in_use
from service.db.repos.datasets import (
    count_datasets,
    create_dataset,
    find_dataset,
    get_dataset,
    list_datasets,
)
from service.db.repos.job_listing import (
    JobFilter,
    JobSummary,
    count_job_summaries,
    list_job_summaries,
    list_model_names,
)
from service.db.repos.job_states import ACTIVE, FINAL, TRANSITIONS, Transition
from service.db.repos.jobs import (
    cancel_job,
    claim_job,
    count_active_jobs,
    count_jobs,
    create_job,
    fail_job,
    find_job,
    find_job_by_id,
    finish_job,
    get_job,
    list_jobs,
    record_progress,
    record_step,
    start_job,
    study_name,
)
from service.db.repos.keys import (
    KEY_PREFIX,
    create_api_key,
    find_key,
    find_team_by_key,
    get_api_key,
    hash_secret,
    list_api_keys,
    revoke_api_key,
)
from service.db.repos.model_usage import (
    Sensitivity,
    count_jobs_by_model,
    find_latest_sensitivity,
    list_model_datasets,
    list_model_jobs,
)
from service.db.repos.models import count_models, create_model, find_model, get_model, list_models
from service.db.repos.teams import (
    create_team,
    find_team_by_name,
    get_team_by_name,
    lock_team,
    team_storage_bytes,
)
from service.db.repos.web_sessions import (
    close_web_session,
    find_web_session,
    mark_key_used,
    open_web_session,
)
from service.db.repos.webhooks import (
    count_deliveries,
    count_webhooks,
    create_webhook,
    delete_webhook,
    get_webhook,
    list_deliveries,
    list_webhooks,
)

__all__ = [
    "ACTIVE",
    "FINAL",
    "KEY_PREFIX",
    "MAX_ID",
    "TRANSITIONS",
    "ArtifactFile",
    "JobFilter",
    "JobSummary",
    "Sensitivity",
    "Transition",
    "blob_in_use",
    "cancel_job",
    "check_label",
    "claim_job",
    "close_web_session",
    "count_active_jobs",
    "count_datasets",
    "count_deliveries",
    "count_job_summaries",
    "count_jobs",
    "count_jobs_by_model",
    "count_models",
    "count_webhooks",
    "create_api_key",
    "create_dataset",
    "create_job",
    "create_model",
    "create_team",
    "create_webhook",
    "delete_webhook",
    "fail_job",
    "find_artifact",
    "find_dataset",
    "find_job",
    "find_job_by_id",
    "find_key",
    "find_latest_sensitivity",
    "find_model",
    "find_team_by_key",
    "find_team_by_name",
    "find_web_session",
    "finish_job",
    "get_api_key",
    "get_artifact",
    "get_dataset",
    "get_job",
    "get_model",
    "get_team_by_name",
    "get_webhook",
    "hash_secret",
    "list_api_keys",
    "list_artifacts",
    "list_datasets",
    "list_deliveries",
    "list_job_summaries",
    "list_jobs",
    "list_model_datasets",
    "list_model_jobs",
    "list_model_names",
    "list_models",
    "list_webhooks",
    "lock_team",
    "mark_key_used",
    "open_web_session",
    "record_progress",
    "record_step",
    "revoke_api_key",
    "start_job",
    "study_name",
    "team_storage_bytes",
]
