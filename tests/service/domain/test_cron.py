"""Due times of schedules with an injected clock: catch-up, time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.domain.cron import check_cron, check_timezone, due_time, next_time
from service.errors import InvalidScheduleError

NY = ZoneInfo("America/New_York")
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_every_minute_fires_the_current_minute_including_its_first_second() -> None:
    assert due_time("* * * * *", "UTC", now=utc(2026, 1, 1, 12, 0), since=LONG_AGO) == utc(
        2026, 1, 1, 12, 0
    )
    at_59 = utc(2026, 1, 1, 12, 0, 59, 999999)
    assert due_time("* * * * *", "UTC", now=at_59, since=LONG_AGO) == utc(2026, 1, 1, 12, 0)


def test_catch_up_fires_only_the_latest_missed_due_time() -> None:
    # Beat down from 01:00 to 05:30: the hourly schedule fires 05:00 once, not 02:00..05:00.
    now = utc(2026, 1, 1, 5, 30)
    assert due_time("0 * * * *", "UTC", now=now, since=LONG_AGO) == utc(2026, 1, 1, 5, 0)


def test_no_due_time_before_the_schedule_existed() -> None:
    created = utc(2026, 1, 1, 12, 0, 30)
    assert due_time("* * * * *", "UTC", now=created, since=created) is None
    later = created + timedelta(seconds=40)
    assert due_time("* * * * *", "UTC", now=later, since=created) == utc(2026, 1, 1, 12, 1)
    # a daily schedule created after today's 02:00 waits for tomorrow's
    since = utc(2026, 1, 1, 3, 0)
    assert due_time("0 2 * * *", "UTC", now=utc(2026, 1, 1, 23, 0), since=since) is None
    assert due_time("0 2 * * *", "UTC", now=utc(2026, 1, 2, 2, 0), since=since) == utc(
        2026, 1, 2, 2, 0
    )


def test_cron_is_read_in_the_schedule_time_zone() -> None:
    # 02:00 in New York (EST, UTC-5) is 07:00 UTC in January, 06:00 UTC in July (EDT).
    assert due_time("0 2 * * *", "America/New_York", now=utc(2026, 1, 10, 8), since=LONG_AGO) == (
        utc(2026, 1, 10, 7)
    )
    assert due_time("0 2 * * *", "America/New_York", now=utc(2026, 7, 10, 8), since=LONG_AGO) == (
        utc(2026, 7, 10, 6)
    )
    assert due_time("0 2 * * *", "Asia/Kolkata", now=utc(2026, 1, 10, 0), since=LONG_AGO) == (
        utc(2026, 1, 9, 20, 30)
    )


def test_spring_forward_gap_fires_right_after_the_gap() -> None:
    # 2026-03-08: New York clocks jump from 02:00 EST to 03:00 EDT; 02:30 does not exist.
    after_gap = datetime(2026, 3, 8, 3, 5, tzinfo=NY)
    due = due_time("30 2 * * *", "America/New_York", now=after_gap, since=LONG_AGO)
    assert due == datetime(2026, 3, 8, 3, 0, tzinfo=NY).astimezone(UTC) == utc(2026, 3, 8, 7)
    # and the day before, as usual
    before = datetime(2026, 3, 8, 1, 0, tzinfo=NY)
    assert due_time("30 2 * * *", "America/New_York", now=before, since=LONG_AGO) == utc(
        2026, 3, 7, 7, 30
    )


def test_fall_back_repeats_fire_a_daily_time_once() -> None:
    # 2026-11-01: 01:00-02:00 happens twice in New York (EDT, then EST).
    second = datetime(2026, 11, 1, 1, 45, tzinfo=NY, fold=1)  # EST, UTC-5: 06:45 UTC
    due = due_time("30 1 * * *", "America/New_York", now=second, since=LONG_AGO)
    assert due == utc(2026, 11, 1, 5, 30)  # the first 01:30 (EDT): fired once, not again
    after = datetime(2026, 11, 1, 1, 10, tzinfo=NY, fold=1)
    assert next_time("30 1 * * *", "America/New_York", after=after) == utc(2026, 11, 2, 6, 30)


def test_next_time_is_strictly_after() -> None:
    assert next_time("*/15 * * * *", "UTC", after=utc(2026, 1, 1, 12, 15)) == utc(
        2026, 1, 1, 12, 30
    )


@pytest.mark.parametrize(
    "cron", ["", "* * * *", "* * * * * *", "61 * * * *", "* 24 * * *", "@daily", "a b c d e"]
)
def test_bad_cron_is_refused(cron: str) -> None:
    with pytest.raises(InvalidScheduleError, match="`cron`"):
        check_cron(cron)


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", "../etc/passwd", "/UTC", " UTC"])
def test_unknown_time_zone_is_refused(zone: str) -> None:
    with pytest.raises(InvalidScheduleError, match="`timezone`"):
        check_timezone(zone)


def test_good_cron_and_zone_pass() -> None:
    check_cron("0 2 * * 1-5", "Europe/Paris")
    check_cron("*/5 * * * *")
