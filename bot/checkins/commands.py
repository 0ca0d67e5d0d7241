"""`!checkin` (this channel's check-ins) and `!checkin NAME` (admins: post it now)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from bot.checkins.schedule import next_period
from bot.commands import CommandContext, command, echo
from bot.settings import CheckinSettings
from bot.store import Store

log = logging.getLogger(__name__)


def status_lines(entry: CheckinSettings, store: Store, now: datetime | None = None) -> list[str]:
    """A check-in's schedule, next fire time (its timezone), and last run with its outcome."""
    now = now or datetime.now(UTC)
    upcoming = next_period(entry, now)
    zone = ZoneInfo(entry.timezone)
    when = (
        f"{upcoming.fire_time.astimezone(zone):%Y-%m-%d %H:%M %Z} ({entry.timezone})"
        if upcoming
        else "never"
    )
    lines = [
        f"{entry.name}: {entry.platform} channel {entry.channel}, repo {entry.repo or '(channel/default)'}, "
        f'cron "{entry.cron}" {entry.timezone}',
        f"  next: {when}",
    ]
    runs = store.checkin_runs(entry.name, limit=1)
    if not runs:
        lines.append("  last: never run")
        return lines
    run = runs[0]
    outcome = run.status
    if run.status == "posted":
        outcome += f": {run.permalink or run.thread_key or '(no link recorded)'}"
    elif run.error:
        outcome += f": {run.error}"
    lines.append(f"  last: {outcome} (period {run.period}, started {run.started_at[:19]} UTC)")
    return lines


@command(
    "checkin",
    usage="!checkin [NAME]",
    summary="this channel's check-ins; `!checkin NAME` posts one now (admins)",
)
async def checkin_command(ctx: CommandContext, args: str) -> str:
    """List this channel's check-ins, or post one now."""
    here = [
        e
        for e in ctx.settings.checkins
        if e.platform == ctx.msg.platform and e.channel == ctx.msg.channel
    ]
    name = args.split()[0] if args.split() else ""
    if not name:
        if not here:
            return "No check-ins are configured for this channel ([[checkins]] in the config)."
        lines = ["**Check-ins in this channel**"]
        for entry in here:
            lines += status_lines(entry, ctx.store)
        return "\n".join(lines)
    chosen = next((e for e in ctx.settings.checkins if e.name == name), None)
    if chosen is None:
        names = ", ".join(f"`{e.name}`" for e in here) or "none here"
        return f"There is no check-in named `{echo(name)}` (this channel: {names})."
    if not ctx.is_admin:
        return "Only admins (see [access] admins) can post a check-in now."
    runner = ctx.services.checkins
    if runner is None:
        return (
            "Check-ins post from `archbot run` (or `archbot checkin run NAME`); "
            "this process cannot post them."
        )
    log.info("check-in %s requested by %s", chosen.name, ctx.msg.user)
    return await runner.run_now(chosen.name, requested_by=ctx.msg.user)
