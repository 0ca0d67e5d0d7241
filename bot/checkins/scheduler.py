"""The check-in scheduler inside `archbot run`: APScheduler's AsyncIOScheduler on the bot's loop.

One job per `[[checkins]]` entry, id `checkin:NAME`, an `async def` job (so
it runs on the loop, where SQLite lives), coalesced, one instance at a time.
APScheduler's misfire rule is switched off (`misfire_grace_time=None`): a late
fire still calls the job, and the job applies ours (older than 24 h: skipped;
otherwise the period's claim decides). Runs missed while the bot was down are
our catch-up, at start, since the scheduler itself keeps no state.
"""

from __future__ import annotations

import logging
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.checkins.engine import CheckinService
from bot.checkins.schedule import trigger

log = logging.getLogger(__name__)


def job_id(name: str) -> str:
    """The stable id of a check-in's job."""
    return f"checkin:{name}"


def build_scheduler(service: CheckinService) -> AsyncIOScheduler:
    """A scheduler (not started) with one job per configured check-in."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    for entry in service.settings.checkins:

        async def fire(name: str = entry.name) -> None:
            try:
                await service.run_scheduled(name)
            except Exception:
                log.exception("check-in %s: the scheduled run failed", name)

        scheduler.add_job(
            fire,
            trigger=trigger(entry),
            id=job_id(entry.name),
            name=f"check-in {entry.name}",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            replace_existing=True,
        )
    return scheduler


def describe_jobs(scheduler: AsyncIOScheduler) -> list[str]:
    """One line per job: its id and next fire time (after the scheduler started)."""
    lines = []
    for job in scheduler.get_jobs():
        when: datetime | None = getattr(job, "next_run_time", None)
        shown = when.isoformat() if when else "never"
        lines.append(f"{job.id} next at {shown}")
    return lines
