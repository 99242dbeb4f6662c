"""Per-team quotas: active jobs and storage, from the service's settings.

- **Active jobs** (``max_active_jobs_per_team``): a team may have that many jobs queued,
  preparing or running at once; :func:`active_jobs_guard` is run by
  :func:`~service.db.repos.create_job` inside the transaction that inserts the job, with
  the team's row locked (PostgreSQL), so concurrent submissions cannot both slip in.
- **Storage** (``max_team_storage_bytes``): the team's models, datasets and job artifacts
  (their recorded sizes) plus a new upload may not pass it; :func:`check_storage` is
  called by the model and dataset domain functions before the import or load starts.

Both answer :class:`~service.errors.QuotaExceededError` (429 ``quota_exceeded``) with
the quota, what the team uses and what to do.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from service.db import repos
from service.db.models import Team
from service.db.session import end_reads
from service.errors import QuotaExceededError
from service.settings import get_settings

__all__ = ["active_jobs_guard", "check_storage"]


def active_jobs_guard(team: Team, *, limit: int) -> Callable[[Session], None]:
    """A ``create_job`` guard refusing a job past ``team``'s ``limit`` of active jobs.

    Raises (when run):
        QuotaExceededError: the team already has ``limit`` queued, preparing or running jobs.
    """

    def guard(session: Session) -> None:
        repos.lock_team(session, team=team)
        active = repos.count_active_jobs(session, team=team)
        if active >= limit:
            raise QuotaExceededError(
                f"your team has {active} active jobs (queued, preparing or running), its "
                f"quota; wait for one to finish or cancel one (POST /v1/jobs/{{id}}/cancel), "
                "then submit again"
            )

    return guard


def check_storage(session: Session, *, team: Team, adding: int, limit: int | None = None) -> None:
    """Refuse ``adding`` more bytes for ``team`` when its stored bytes would pass the quota.

    Args:
        session: the database session.
        team: the uploading team.
        adding: the new file's size in bytes.
        limit: the quota in bytes; ``None`` reads ``max_team_storage_bytes`` from the
            process's settings (the API's and the CLI's are the environment's).

    Raises:
        QuotaExceededError: the team's models, datasets and artifacts plus ``adding``
            would exceed the quota.
    """
    quota = get_settings().max_team_storage_bytes if limit is None else limit
    used = repos.team_storage_bytes(session, team=team)
    end_reads(session)  # no connection is held through the import that follows
    if used + adding > quota:
        raise QuotaExceededError(
            f"this file ({adding:,} bytes) would take your team's storage to "
            f"{used + adding:,} bytes, over its quota of {quota:,} bytes (models, datasets "
            "and job artifacts together); ask an administrator to raise the quota "
            "(MPQ_MAX_TEAM_STORAGE_BYTES), or upload a smaller file"
        )
