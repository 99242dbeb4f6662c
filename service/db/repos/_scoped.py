"""The read side every owned table shares: get, find, list and count, written once.

A row of a scoped table belongs to an owner -- a team (models, datasets, jobs) or a
job (artifacts) -- and is looked up by a key within it (an id, a name). Every read
filters on the owner, so one team never sees another's rows, and another team's id
reads exactly like a missing one. So does an integer key above :data:`ROW_ID_MAX`: ids
are SQL ``INTEGER`` columns, 32-bit on PostgreSQL, which refuses to bind a larger value
(and SQLite anything past ``BIGINT``), while the API accepts any id up to :data:`MAX_ID`
and answers a miss. A ``skip`` past :data:`MAX_ID` lists nothing. Names say what a
miss does: :meth:`Scoped.get` raises :class:`~service.errors.NotFoundError`,
:meth:`Scoped.find` returns ``None``, :meth:`Scoped.list` returns a (possibly empty)
list, :meth:`Scoped.latest` the first rows of several owners at once (a page showing
each one's latest few), :meth:`Scoped.count` an int.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.base import ExecutableOption

from service.db.base import Base
from service.errors import NotFoundError

__all__ = ["MAX_ID", "Scoped"]

MAX_ID = 2**63 - 1
"""The largest id the API accepts (SQL ``BIGINT``); larger ones are refused (422)."""

ROW_ID_MAX = 2**31 - 1
"""The largest id a row can have (SQL ``INTEGER``); a larger one is looked up as a miss."""

RowT = TypeVar("RowT", bound=Base)


class Scoped(Generic[RowT]):
    """Reads of ``table``'s rows owned by one owner.

    Args:
        table: the ORM class.
        owner: the column holding the owner's id (``team_id``, ``job_id``).
        key: the column a row is looked up by within its owner (``id``, ``name``).
        order: the order of :meth:`list` (newest first for most tables).
        missing: the :class:`NotFoundError` message for ``(owner id, key)``.
    """

    def __init__(
        self,
        table: type[RowT],
        *,
        owner: str,
        key: str,
        order: Sequence[ColumnElement[Any]],
        missing: Callable[[int, Any], str],
    ) -> None:
        self.table, self.owner, self.key = table, owner, key
        self.order, self.missing = tuple(order), missing

    def find(self, session: Session, owner_id: int, key: Any) -> RowT | None:
        """The row ``key`` of owner ``owner_id``, or ``None`` (another owner's too)."""
        if not _bindable(owner_id) or (isinstance(key, int) and not _bindable(key)):
            return None
        query = select(self.table).filter_by(**{self.owner: owner_id, self.key: key})
        return session.scalars(query).one_or_none()

    def get(self, session: Session, owner_id: int, key: Any) -> RowT:
        """The row ``key`` of owner ``owner_id``.

        Raises:
            NotFoundError: no such row, or it belongs to another owner (indistinguishable).
        """
        row = self.find(session, owner_id, key)
        if row is None:
            raise NotFoundError(self.missing(owner_id, key))
        return row

    def list(
        self,
        session: Session,
        owner_id: int,
        *where: ColumnElement[bool],
        skip: int = 0,
        limit: int | None = None,
        options: Sequence[ExecutableOption] = (),
    ) -> list[RowT]:
        """The owner's rows matching ``where``, in :attr:`order`, ``limit`` after ``skip``.

        ``options`` are loader options for the query (``defer`` a large column a list
        does not show).
        """
        if not _bindable(owner_id) or not 0 <= skip <= MAX_ID:
            return []
        query = select(self.table).filter_by(**{self.owner: owner_id}).where(*where)
        query = query.options(*options)
        query = query.order_by(*self.order).offset(skip).limit(limit)
        return list(session.scalars(query))

    def latest(
        self, session: Session, owner_ids: Sequence[int], per: int
    ) -> dict[int, builtins.list[RowT]]:
        """The first ``per`` rows (in :attr:`order`) of each owner in ``owner_ids``, in one
        query: ``ROW_NUMBER() OVER (PARTITION BY owner ORDER BY order) <= per``.

        An owner without rows maps to an empty list.
        """
        owners = [i for i in dict.fromkeys(owner_ids) if _bindable(i)]
        latest: dict[int, builtins.list[RowT]] = {i: [] for i in owners}
        if not owners or per < 1:
            return latest
        owner = getattr(self.table, self.owner)
        rank = func.row_number().over(partition_by=owner, order_by=self.order).label("rank")
        ranked = select(self.table, rank).where(owner.in_(owners)).subquery()
        row = aliased(self.table, ranked)
        query = select(row).where(ranked.c.rank <= per)
        query = query.order_by(ranked.c[self.owner], ranked.c.rank)
        for found in session.scalars(query):
            latest[getattr(found, self.owner)].append(found)
        return latest

    def count(self, session: Session, owner_id: int, *where: ColumnElement[bool]) -> int:
        """How many rows matching ``where`` the owner has."""
        query = select(func.count()).select_from(self.table)
        query = query.filter_by(**{self.owner: owner_id}).where(*where)
        return session.scalar(query) or 0


def _bindable(value: int) -> bool:
    """Whether ``value`` can be an id (``bool`` aside: ``True`` is not id 1)."""
    return not isinstance(value, bool) and 1 <= value <= ROW_ID_MAX
