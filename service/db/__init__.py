"""The service database: ORM models, engine and sessions, repositories, migrations."""

from __future__ import annotations

from service.db.base import Base
from service.db.models import ApiKey, Artifact, Dataset, Job, JobStatus, Model, ModelKind, Team
from service.db.repos import (
    create_api_key,
    create_model,
    create_team,
    find_team_by_key,
    find_team_by_name,
    get_team_by_name,
    revoke_api_key,
)
from service.db.session import make_engine, session_factory

__all__ = [
    "ApiKey",
    "Artifact",
    "Base",
    "Dataset",
    "Job",
    "JobStatus",
    "Model",
    "ModelKind",
    "Team",
    "create_api_key",
    "create_model",
    "create_team",
    "find_team_by_key",
    "find_team_by_name",
    "get_team_by_name",
    "make_engine",
    "revoke_api_key",
    "session_factory",
]
