"""Check-in trigger maths: fire times and periods from a cron entry in its own timezone.

Pure functions of an explicit `now`, so DST changes and catch-up rules are
tested with plain datetimes. A period is named by its fire time's wall clock
in the entry's timezone: the hour a fall-back change repeats (APScheduler fires
01:30 twice that night) is one period, so it is posted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from bot.settings import CheckinSettings

# How far back the latest fire time is looked for: longer than any 5-field cron's gap.
_LOOKBACK = (
    timedelta(minutes=2),
    timedelta(hours=2),
    timedelta(days=2),
    timedelta(days=8),
    timedelta(days=32),
    timedelta(days=367),
    timedelta(days=5 * 366),
)
CATCH_UP_WINDOW = timedelta(hours=24)
MAX_SKIPPED_RECORDED = 100  # missed periods recorded per start (a bot down for months)


@dataclass(frozen=True, slots=True)
class Period:
    """One scheduled fire of a check-in: the instant (UTC) and its stable name."""

    fire_time: datetime  # aware, UTC
    key: str  # e.g. "2026-11-30 09:00 Europe/London"

    @property
    def fire_iso(self) -> str:
        """The fire time as stored (UTC ISO-8601, sortable)."""
        return self.fire_time.astimezone(UTC).isoformat()


class CheckinTrigger(CronTrigger):  # type: ignore[misc]
    """A CronTrigger that always moves forward and fires a repeated fall-back hour once.

    APScheduler 3.11's own CronTrigger returns the second 01:30 of a London
    fall-back night again and again when asked for the time after it, which
    would spin the scheduler's loop; this one steps past it.
    """

    def __init__(self, entry: CheckinSettings) -> None:
        fields = entry.cron.split()
        minute, hour, day, month, day_of_week = fields
        super().__init__(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            timezone=ZoneInfo(entry.timezone),
        )
        self.entry = entry

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        """The first fire after the previous one (or from `now` on), one per wall-clock time."""
        if previous_fire_time is None:
            return next_fire_after(self, now - timedelta(microseconds=1))
        fire = next_fire_after(self, previous_fire_time)
        if fire is not None and same_wall_clock(self.entry, fire, previous_fire_time):
            fire = next_fire_after(self, fire)
        return fire


def trigger(entry: CheckinSettings) -> CheckinTrigger:
    """The entry's cron trigger in its own timezone (DST-correct wall-clock times)."""
    return CheckinTrigger(entry)


def next_fire_after(cron: CronTrigger, moment: datetime) -> datetime | None:
    """The first fire time strictly after `moment` (stepping past APScheduler's stuck answers)."""
    cursor = moment
    for _ in range(10_000):
        fire: datetime | None = CronTrigger.get_next_fire_time(
            cron, None, cursor + timedelta(microseconds=1)
        )
        if fire is None or fire > moment:
            return fire
        cursor += timedelta(minutes=1)
    return None


def same_wall_clock(entry: CheckinSettings, a: datetime, b: datetime) -> bool:
    """True when two instants show the same minute on the entry's clock (a fall-back repeat)."""
    return period_of(entry, a).key == period_of(entry, b).key


def period_of(entry: CheckinSettings, fire_time: datetime) -> Period:
    """The period a fire time belongs to, named by its wall clock in the entry's timezone."""
    local = fire_time.astimezone(ZoneInfo(entry.timezone))
    return Period(fire_time.astimezone(UTC), f"{local:%Y-%m-%d %H:%M} {entry.timezone}")


def fire_times(entry: CheckinSettings, start: datetime, end: datetime) -> list[Period]:
    """Every period whose fire time is in (start, end], oldest first, one per wall-clock time."""
    cron = trigger(entry)
    out: list[Period] = []
    previous: datetime | None = None
    while True:
        fire = (
            next_fire_after(cron, start)
            if previous is None
            else cron.get_next_fire_time(previous, previous)
        )
        if fire is None or fire > end:
            return out
        out.append(period_of(entry, fire))
        previous = fire


def next_period(entry: CheckinSettings, now: datetime) -> Period | None:
    """The first period after `now` (a repeat of the latest one, at DST fall-back, is not one)."""
    latest = latest_period(entry, now)
    cron = trigger(entry)
    fire = (
        cron.get_next_fire_time(latest.fire_time, now)
        if latest is not None
        else next_fire_after(cron, now)
    )
    while fire is not None and fire <= now:
        fire = cron.get_next_fire_time(fire, now)
    return period_of(entry, fire) if fire is not None else None


def latest_period(entry: CheckinSettings, now: datetime) -> Period | None:
    """The period of the latest fire time at or before `now` (None if it never fired)."""
    for back in _LOOKBACK:
        found = fire_times(entry, now - back, now)
        if found:
            return found[-1]
    return None


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What to do at start for one check-in: make one period up, record others as skipped."""

    make_up: Period | None
    skipped: tuple[Period, ...]


def catch_up_plan(
    entry: CheckinSettings,
    now: datetime,
    *,
    first_run_at: datetime | None,
    last_recorded_fire: datetime | None,
) -> CatchUp:
    """Periods missed while the bot was down and what to do with each.

    A check-in that never ran is not made up. Otherwise every period after the
    last recorded one (and after the first run) is missed: the latest is made up
    once when its fire time is within 24 h, every other one is recorded as skipped.
    """
    if first_run_at is None:
        return CatchUp(None, ())
    start = max(first_run_at, last_recorded_fire or first_run_at)
    if now - start > timedelta(days=5 * 366):
        start = now - timedelta(days=5 * 366)
    missed = fire_times(entry, start, now)
    if not missed:
        return CatchUp(None, ())
    latest = missed[-1]
    if now - latest.fire_time <= CATCH_UP_WINDOW:
        return CatchUp(latest, tuple(missed[:-1][-MAX_SKIPPED_RECORDED:]))
    return CatchUp(None, tuple(missed[-MAX_SKIPPED_RECORDED:]))
