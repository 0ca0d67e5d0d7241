"""Check-in trigger maths with explicit clocks: timezones, DST changes, catch-up rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from bot.checkins.schedule import (
    catch_up_plan,
    fire_times,
    latest_period,
    next_period,
    trigger,
)
from bot.settings import CheckinSettings


def entry(cron: str, tz: str) -> CheckinSettings:
    return CheckinSettings(name="weekly-architecture", channel="C1", cron=cron, timezone=tz)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_monday_nine_in_london_is_nine_utc_in_winter_and_eight_in_summer() -> None:
    weekly = entry("0 9 * * mon", "Europe/London")
    hours = {
        p.fire_time.date().isoformat(): p.fire_time.hour
        for p in fire_times(weekly, utc(2026, 1, 1), utc(2026, 12, 31))
    }
    assert len(hours) == 52
    assert hours["2026-01-05"] == 9  # GMT
    assert hours["2026-03-23"] == 9  # the last Monday before the clocks go forward (29 March)
    assert hours["2026-03-30"] == 8  # BST
    assert hours["2026-07-06"] == 8
    assert hours["2026-10-19"] == 8
    assert hours["2026-10-26"] == 9  # back to GMT after 25 October
    assert all(
        p.key.endswith("09:00 Europe/London")
        for p in fire_times(weekly, utc(2026, 1, 1), utc(2026, 12, 31))
    )


def test_monday_nine_in_new_york_moves_between_fourteen_and_thirteen_utc() -> None:
    weekly = entry("0 9 * * mon", "America/New_York")
    hours = {
        p.fire_time.date().isoformat(): p.fire_time.hour
        for p in fire_times(weekly, utc(2026, 1, 1), utc(2026, 12, 31))
    }
    assert hours["2026-03-02"] == 14  # EST
    assert hours["2026-03-09"] == 13  # EDT from 8 March
    assert hours["2026-11-02"] == 14  # EST again from 1 November


def test_london_fall_back_night_posts_a_repeated_hour_once_and_the_trigger_moves_on() -> None:
    nightly = entry("30 1 * * *", "Europe/London")
    periods = fire_times(nightly, utc(2026, 10, 23), utc(2026, 10, 28))
    assert [p.key for p in periods] == [f"2026-10-{d} 01:30 Europe/London" for d in range(23, 28)]
    assert [p.fire_iso for p in periods][2:4] == [
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
    ]
    # The scheduler asks for the fire after the previous one: ours moves forward, past
    # the repeat (APScheduler's own trigger answers the repeat again and again).
    cron = trigger(nightly)
    first = cron.get_next_fire_time(None, utc(2026, 10, 25))
    assert first is not None and first.astimezone(UTC) == utc(2026, 10, 25, 0, 30)
    after = cron.get_next_fire_time(first, first)
    assert after is not None and after.astimezone(UTC) == utc(2026, 10, 26, 1, 30)
    stock = CronTrigger.from_crontab("30 1 * * *", timezone="Europe/London")
    fire = stock.get_next_fire_time(None, utc(2026, 10, 25))
    answers = []
    for _ in range(3):
        assert fire is not None
        fire = stock.get_next_fire_time(fire, fire + timedelta(microseconds=1))
        assert fire is not None
        answers.append(fire.astimezone(UTC))
    assert answers == [utc(2026, 10, 25, 1, 30)] * 3  # stuck on the repeat


def test_london_spring_forward_still_fires_once_that_night() -> None:
    nightly = entry("30 1 * * *", "Europe/London")
    periods = fire_times(nightly, utc(2026, 3, 28), utc(2026, 3, 31))
    assert [p.fire_iso for p in periods] == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:30:00+00:00",  # 01:30 does not exist; 02:30 BST, once
        "2026-03-30T00:30:00+00:00",
    ]


def test_new_york_dst_changes_fire_once_a_day() -> None:
    spring = fire_times(entry("30 2 * * *", "America/New_York"), utc(2026, 3, 7), utc(2026, 3, 10))
    assert [p.fire_time.day for p in spring] == [7, 8, 9]
    fall = fire_times(entry("30 1 * * *", "America/New_York"), utc(2026, 10, 31), utc(2026, 11, 3))
    assert [p.key for p in fall] == [
        "2026-10-31 01:30 America/New_York",
        "2026-11-01 01:30 America/New_York",
        "2026-11-02 01:30 America/New_York",
    ]


def test_latest_and_next_period_around_a_fire_time() -> None:
    weekly = entry("0 9 * * mon", "Europe/London")
    monday = utc(2026, 11, 30, 9, 0)
    assert latest_period(weekly, monday).key == "2026-11-30 09:00 Europe/London"  # type: ignore[union-attr]
    assert (
        latest_period(weekly, monday - timedelta(seconds=1)).key == "2026-11-23 09:00 Europe/London"
    )  # type: ignore[union-attr]
    assert next_period(weekly, monday).fire_time == utc(2026, 12, 7, 9, 0)  # type: ignore[union-attr]
    every_minute = entry("* * * * *", "UTC")
    assert next_period(every_minute, utc(2026, 12, 1, 10, 0, 30)).fire_time == utc(
        2026, 12, 1, 10, 1
    )  # type: ignore[union-attr]


def test_catch_up_never_run_is_not_made_up() -> None:
    weekly = entry("0 9 * * mon", "Europe/London")
    plan = catch_up_plan(weekly, utc(2026, 11, 30, 12), first_run_at=None, last_recorded_fire=None)
    assert plan.make_up is None and plan.skipped == ()


def test_catch_up_within_a_day_is_made_up_once_and_older_misses_are_skipped() -> None:
    weekly = entry("0 9 * * mon", "Europe/London")
    first = utc(2026, 11, 2, 9)
    plan = catch_up_plan(
        weekly, utc(2026, 11, 30, 20), first_run_at=first, last_recorded_fire=utc(2026, 11, 16, 9)
    )
    assert plan.make_up is not None and plan.make_up.key == "2026-11-30 09:00 Europe/London"
    assert [p.key for p in plan.skipped] == ["2026-11-23 09:00 Europe/London"]
    late = catch_up_plan(
        weekly, utc(2026, 12, 1, 9, 1), first_run_at=first, last_recorded_fire=utc(2026, 11, 23, 9)
    )
    assert late.make_up is None
    assert [p.key for p in late.skipped] == ["2026-11-30 09:00 Europe/London"]


def test_catch_up_ignores_fire_times_before_the_first_run_and_already_recorded_ones() -> None:
    weekly = entry("0 9 * * mon", "Europe/London")
    plan = catch_up_plan(
        weekly, utc(2026, 11, 30, 12), first_run_at=utc(2026, 11, 30, 10), last_recorded_fire=None
    )
    assert plan.make_up is None and plan.skipped == ()  # 09:00 was before the check-in first ran
    done = catch_up_plan(
        weekly,
        utc(2026, 11, 30, 12),
        first_run_at=utc(2026, 11, 2),
        last_recorded_fire=utc(2026, 11, 30, 9),
    )
    assert done.make_up is None and done.skipped == ()
