"""Cron arithmetic of schedules: parse a 5-field expression in a time zone, find due times.

A schedule's *due times* are the matches of its cron expression read as wall-clock times
in its IANA time zone, in the order :mod:`cronsim` steps forward through them (the Vixie
cron rules at daylight-saving changes): a wall time skipped by a spring-forward gap fires
at the first minute after the gap (``30 2 * * *`` in ``America/New_York`` fires at 03:00
EDT on the day clocks jump from 02:00 to 03:00), and a daily time that occurs twice at a
fall-back fires once, at its first occurrence (an hourly one fires in both hours).

Catch-up policy (:func:`due_time`): at a tick at ``now``, the one due time to fire is the
*latest* due time ``t <= now``, provided ``t >= since`` (when the schedule was created or
last changed). Earlier due times that were missed -- beat was down -- are never fired;
so a schedule whose beat was down for a week runs once when beat comes back, not seven
times, and a schedule never fires for a time before it existed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from service.errors import InvalidScheduleError

__all__ = ["check_cron", "check_timezone", "due_time", "next_time"]

FIELDS = 5
_LOOKBACK = 3  # reverse matches stepped back before walking forward to now
_MAX_STEPS = 1000  # forward matches walked at most (a few, but for DST hours)


def check_timezone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``UTC``, ``Europe/Paris``).

    Raises:
        InvalidScheduleError: no such zone in the system's (or ``tzdata``'s) database.
    """
    try:
        if not name or name != name.strip() or name.startswith(("/", ".")):
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidScheduleError(
            f"`timezone` {name[:80]!r} is not an IANA time zone name; use one such as "
            "'UTC', 'Europe/Paris' or 'America/New_York'"
        ) from None


def check_cron(cron: str, timezone: str = "UTC") -> None:
    """Refuse a cron expression that is not 5 fields cron can match, or a bad time zone.

    Raises:
        InvalidScheduleError: ``cron`` does not parse (the message says which field),
            or ``timezone`` is not an IANA name.
    """
    zone = check_timezone(timezone)
    fields = cron.split()
    if len(fields) != FIELDS:
        raise InvalidScheduleError(
            f"`cron` {cron[:80]!r} has {len(fields)} fields; give 5: minute hour "
            "day-of-month month day-of-week, such as '0 2 * * *' (02:00 every day)"
        )
    try:
        next(iter(CronSim(cron, datetime.now(zone))))
    except (CronSimError, StopIteration, ValueError) as exc:
        raise InvalidScheduleError(
            f"`cron` {cron[:80]!r} is not a valid cron expression ({exc}); the fields are "
            "minute hour day-of-month month day-of-week, such as '0 2 * * 1-5'"
        ) from None


def next_time(cron: str, timezone: str, *, after: datetime) -> datetime | None:
    """The first due time strictly after ``after`` (aware), in UTC; None if there is none.

    Compared in UTC: two wall times of one zone compare naively in Python (``fold``
    ignored), and in a fall-back hour cronsim may step to the first of the two.
    """
    try:
        for t in islice(CronSim(cron, after.astimezone(ZoneInfo(timezone))), _MAX_STEPS):
            if t.astimezone(UTC) > after:
                return t.astimezone(UTC)
    except CronSimError:
        pass
    return None


def due_time(cron: str, timezone: str, *, now: datetime, since: datetime) -> datetime | None:
    """The due time a tick at ``now`` fires: the latest ``t <= now`` with ``t >= since``.

    Both arguments are timezone-aware; the answer is in UTC, or None when the latest due
    time is before ``since`` (or the expression never matches). Computed by stepping
    back :data:`_LOOKBACK` matches and walking forward to ``now``, so the answer is
    always one of the forward series (see the module docstring on DST).
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    back = list(islice(CronSim(cron, local + timedelta(minutes=1), reverse=True), _LOOKBACK))
    if not back:
        return None
    latest: datetime | None = None
    for t in islice(CronSim(cron, back[-1] - timedelta(minutes=1)), _MAX_STEPS):
        if t.astimezone(UTC) > now:  # in UTC: see next_time
            break
        latest = t.astimezone(UTC)
    if latest is None or latest < since:
        return None
    return latest
