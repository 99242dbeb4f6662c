"""Teams: the tenants that own keys, models, datasets and jobs."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db.models import Artifact, Dataset, Job, Model, Team
from service.db.repos._names import check_team_name
from service.db.session import end_reads
from service.errors import ConflictError, NotFoundError

__all__ = [
    "create_team",
    "find_team_by_name",
    "get_team_by_name",
    "lock_team",
    "team_storage_bytes",
]


def create_team(session: Session, *, name: str) -> Team:
    """Create a team called ``name`` (letters, digits, ``_.-``; at most 64 characters).

    Raises:
        InvalidNameError: ``name`` does not fit the pattern.
        ConflictError: a team called ``name`` exists already.
    """
    end_reads(session)
    check_team_name(name)
    taken = ConflictError(f"a team named {name!r} exists already; choose another name")
    if find_team_by_name(session, name) is not None:
        raise taken
    team = Team(name=name)
    session.add(team)
    try:
        session.commit()
    except IntegrityError:  # created by someone else since the check above
        session.rollback()
        raise taken from None
    return team


def find_team_by_name(session: Session, name: str) -> Team | None:
    """The team called ``name``, or ``None``."""
    return session.scalars(select(Team).where(Team.name == name)).one_or_none()


def get_team_by_name(session: Session, name: str) -> Team:
    """The team called ``name``.

    Raises:
        NotFoundError: no team has that name.
    """
    team = find_team_by_name(session, name)
    if team is None:
        raise NotFoundError(
            f"no team named {name!r}; create it with `mpq admin create-team {name}`"
        )
    return team


def team_storage_bytes(session: Session, *, team: Team) -> int:
    """Bytes of ``team``'s uploaded models and datasets and its jobs' artifacts, summed."""
    models = select(func.coalesce(func.sum(Model.size_bytes), 0)).where(Model.team_id == team.id)
    datasets = select(func.coalesce(func.sum(Dataset.size_bytes), 0)).where(
        Dataset.team_id == team.id
    )
    artifacts = (
        select(func.coalesce(func.sum(Artifact.size_bytes), 0))
        .join(Job, Job.id == Artifact.job_id)
        .where(Job.team_id == team.id)
    )
    return sum(int(session.scalar(q) or 0) for q in (models, datasets, artifacts))


def lock_team(session: Session, *, team: Team) -> None:
    """Lock ``team``'s row until the transaction ends; call it first in the transaction.

    A check that counts the team's rows and then inserts one (a quota) holds it, so two
    concurrent requests cannot both pass. PostgreSQL locks the row (``FOR UPDATE``).
    SQLite has one lock for the whole file and ignores ``FOR UPDATE``: a no-op ``UPDATE``
    takes that write lock now, waiting for it (the busy timeout), before the count reads.
    Reading first would fail at the insert with "database is locked" whenever another
    connection (a worker's heartbeat) committed in between: in WAL mode a read snapshot
    cannot become a write.
    """
    if session.get_bind().dialect.name == "sqlite":
        touch = update(Team).where(Team.id == team.id).values(id=Team.id)
        session.execute(touch.execution_options(synchronize_session=False))
        return
    session.execute(select(Team.id).where(Team.id == team.id).with_for_update())
