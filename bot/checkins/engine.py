"""Running one check-in: claim its period, gather the content, post it, record the outcome.

Exactly once per period: the run claims `(name, period)` in SQLite before it
posts, so a second run (another process, a restart, the scheduler and a manual
`archbot checkin run` together) posts nothing; `force` claims a period of its
own. A failed post is retried with backoff within the run, then recorded as
failed with its error. The review is a normal tool-using turn of the check-in's
own thread, prepared before the post and keyed to the platform's thread once the
message exists, so the thread's history starts with the check-in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from bot.checkins import content
from bot.checkins.schedule import CATCH_UP_WINDOW, Period, catch_up_plan, latest_period
from bot.errors import ArchbotError, ToolError
from bot.events import thread_key
from bot.metrics import CHECKINS
from bot.signoff import sign_off, strip_sign_off
from bot.tools.repo import format_activity

if TYPE_CHECKING:
    from bot.consultant import Consultant
    from bot.settings import CheckinSettings, Secrets, Settings
    from bot.store import CheckinRun, Store, ThreadRow
    from bot.tools import Services

log = logging.getLogger(__name__)

FIRST_RUN_WINDOW = timedelta(days=7)
# Waits between posting attempts: four tries within about four seconds.
BACKOFF_SECONDS: tuple[float, ...] = (0.5, 1.0, 2.0)
CHECKIN_USER = "archbot-checkin"  # who the review turn belongs to (usage ledger, budget)
ERROR_LIMIT = 300
PENDING_PLATFORM = "checkin-pending"  # a check-in thread's platform until its message is posted


@dataclass(frozen=True, slots=True)
class PostedMessage:
    """What the platform answered to a check-in post."""

    message_id: str
    thread: str  # the platform's thread id replies in it carry (Slack ts, Discord thread id)
    permalink: str


class CheckinPoster(Protocol):
    """Posts a check-in as a new top-level message that opens a thread (REST, no gateway)."""

    platform: str

    async def workspace(self, channel: str) -> str:
        """The workspace (Slack team, Discord guild) the channel belongs to, as thread keys use it."""
        ...

    def thread_link(self, workspace: str, channel: str, thread: str) -> str | None:
        """A link to a thread of this platform, built from validated ids (None if they are not)."""
        ...

    async def post(self, channel: str, title: str, text: str) -> PostedMessage:
        """Post `text` (signed off) as a new top-level message; the rest continues in its thread."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...


PosterFactory = Callable[[str], Awaitable[CheckinPoster]]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How one run ended: posted, duplicate (the period already has one), failed or skipped."""

    name: str
    status: str
    period: str
    detail: str
    permalink: str = ""

    def line(self) -> str:
        """One line for the CLI, a command reply or the log."""
        return f"{self.name}: {self.detail}"


class CheckinService:
    """Runs the configured check-ins through the platforms' posters."""

    def __init__(
        self,
        settings: Settings,
        secrets: Secrets,
        store: Store,
        consultant: Consultant,
        services: Services,
        posters: PosterFactory,
        *,
        backoff: Sequence[float] = BACKOFF_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.store = store
        self.consultant = consultant
        self.services = services
        self._make_poster = posters
        self._posters: dict[str, CheckinPoster] = {}
        self.backoff = tuple(backoff)
        self.clock = clock

    def entry(self, name: str) -> CheckinSettings:
        """The configured check-in with this name; ArchbotError listing the names otherwise."""
        for entry in self.settings.checkins:
            if entry.name == name:
                return entry
        names = ", ".join(e.name for e in self.settings.checkins) or "none configured"
        raise ArchbotError(f"no check-in named {content.one_line(name, 60)!r} ({names})")

    async def aclose(self) -> None:
        """Close the posters' connections."""
        for poster in self._posters.values():
            try:
                await poster.aclose()
            except Exception:
                log.debug("closing a check-in poster failed", exc_info=True)
        self._posters.clear()

    async def run_now(self, name: str, *, force: bool = False, requested_by: str = "") -> str:
        """Post a check-in now (the `!checkin NAME` command); one line saying what happened."""
        outcome = await self.run(name, force=force, trigger=f"command:{requested_by}"[:80])
        return outcome.line()

    async def run(
        self,
        name: str,
        *,
        force: bool = False,
        trigger: str = "manual",
        period: Period | None = None,
    ) -> RunOutcome:
        """Run one check-in for `period` (default: the latest fire time) unless it already ran."""
        entry = self.entry(name)
        now = self.clock()
        period = period or latest_period(entry, now)
        if period is None:  # a cron that has never fired yet (e.g. a date in the future)
            period = Period(now, f"{now:%Y-%m-%d %H:%M} UTC (before the first fire time)")
        key = period.key
        if force:
            key = f"{period.key} (forced {now.isoformat(timespec='microseconds')})"
        run_id, holder = self.store.claim_checkin_run(name, key, period.fire_iso, trigger=trigger)
        if run_id is None:
            assert holder is not None
            CHECKINS.labels(outcome="duplicate").inc()
            return RunOutcome(name, "duplicate", key, _already(holder), holder.permalink or "")
        try:
            outcome = await self._post_run(entry, run_id, key, period, now)
        except Exception as exc:
            # Whatever broke (the model, GitHub, a bug), the run is recorded and loud.
            error = _describe(exc)
            log.error("check-in %s failed for %s: %s", name, key, error, exc_info=exc)
            self.store.finish_checkin_run(run_id, status="failed", attempts=0, error=error)
            CHECKINS.labels(outcome="failed").inc()
            return RunOutcome(name, "failed", key, f"failed for {key}: {error}")
        CHECKINS.labels(outcome=outcome.status).inc()
        return outcome

    async def run_scheduled(self, name: str) -> RunOutcome:
        """The scheduler's job: the period that just fired, unless it is older than 24 h."""
        entry = self.entry(name)
        now = self.clock()
        period = latest_period(entry, now)
        if period is not None and now - period.fire_time > CATCH_UP_WINDOW:
            self.store.record_skipped_checkin(
                name, period.key, period.fire_iso, "fired more than 24 h late"
            )
            CHECKINS.labels(outcome="skipped").inc()
            return RunOutcome(name, "skipped", period.key, f"skipped {period.key}: over 24 h late")
        outcome = await self.run(name, trigger="schedule", period=period)
        self._log(outcome)
        return outcome

    async def catch_up(self) -> list[RunOutcome]:
        """At start: make up each check-in's run missed within 24 h, record older misses skipped."""
        outcomes: list[RunOutcome] = []
        now = self.clock()
        for entry in self.settings.checkins:
            first = self.store.first_checkin_run(entry.name)
            last_fire = self.store.latest_checkin_fire_time(entry.name)
            plan = catch_up_plan(
                entry,
                now,
                # The first run's own period: a run made by hand or by the schedule.
                first_run_at=_parse(first.fire_time or first.started_at) if first else None,
                last_recorded_fire=_parse(last_fire) if last_fire else None,
            )
            for missed in plan.skipped:
                if self.store.record_skipped_checkin(
                    entry.name, missed.key, missed.fire_iso, "missed while the bot was down"
                ):
                    log.warning(
                        "check-in %s: missed %s while down (skipped)", entry.name, missed.key
                    )
                    CHECKINS.labels(outcome="skipped").inc()
                    outcomes.append(
                        RunOutcome(entry.name, "skipped", missed.key, f"skipped {missed.key}")
                    )
            if plan.make_up is not None:
                log.info(
                    "check-in %s: making up %s, missed while down", entry.name, plan.make_up.key
                )
                outcome = await self.run(entry.name, trigger="catch-up", period=plan.make_up)
                self._log(outcome)
                outcomes.append(outcome)
        made_up = sum(1 for o in outcomes if o.status != "skipped")
        log.info(
            "check-in catch-up at start: %d made up, %d skipped", made_up, len(outcomes) - made_up
        )
        return outcomes

    # internals ---------------------------------------------------------------------

    def _log(self, outcome: RunOutcome) -> None:
        if outcome.status == "failed":
            return  # already logged at error level with its traceback
        log.info("check-in %s", outcome.line())

    async def _poster(self, platform: str) -> CheckinPoster:
        poster = self._posters.get(platform)
        if poster is None:
            poster = await self._make_poster(platform)
            self._posters[platform] = poster
        return poster

    async def _post_run(
        self, entry: CheckinSettings, run_id: int, key: str, period: Period, now: datetime
    ) -> RunOutcome:
        poster = await self._poster(entry.platform)
        workspace = await poster.workspace(entry.channel)
        channel_key = f"{entry.platform}/{workspace}/{entry.channel}"
        previous = self.store.last_posted_checkin(entry.name)
        since = _parse(previous.started_at) if previous else now - FIRST_RUN_WINDOW
        repo = self._repo(entry, channel_key)
        activity_text, activity_for_model = await self._activity(repo, since)
        todos = self.store.open_todos_in_channel(channel_key)
        todos_text = content.render_todos(
            todos, lambda t: poster.thread_link(t.workspace, t.channel, t.thread)
        )
        head = content.header(entry.name, period.key, now)
        # The review's thread exists before the post; it gets the platform's key after.
        pending_key = thread_key(entry.platform, workspace, entry.channel, f"checkin-run-{run_id}")
        with self.store.transaction():
            thread = self.store.ensure_thread(
                pending_key,
                # Not a platform until posted: recovery at start (after a crash mid-review)
                # finds no outbox for it, so nothing is posted to a thread that does not exist.
                platform=PENDING_PLATFORM,
                workspace=workspace,
                channel=entry.channel,
                thread=f"checkin-run-{run_id}",
                channel_key=channel_key,
                checkin=entry.name,
            )
            if repo:
                self.store.set_thread_repo(thread.id, repo)
        brief = "\n\n".join(
            [
                f"{content.REVIEW_REQUEST}\n\nCheck-in {entry.name!r} for {period.key}, "
                f"repository {repo or '(none configured)'}.",
                activity_for_model,
                todos_text,
                self._previous_for_model(previous),
            ]
        )
        review = await self._review(thread, brief)
        text = sign_off(content.compose(head, activity_text, todos_text, review))
        posted, attempts, error = await self._post_with_retries(poster, entry, text)
        if posted is None:
            log.error(
                "check-in %s: posting to %s failed after %d attempts: %s",
                entry.name,
                entry.channel,
                attempts,
                error,
            )
            self.store.finish_checkin_run(run_id, status="failed", attempts=attempts, error=error)
            return RunOutcome(
                entry.name,
                "failed",
                key,
                f"posting to {entry.platform} channel {entry.channel} failed after "
                f"{attempts} attempts: {error}",
            )
        real_key = thread_key(entry.platform, workspace, entry.channel, posted.thread)
        with self.store.transaction():
            existing = self.store.get_thread(real_key)
            if existing is None:
                self.store.rekey_thread(thread.id, real_key, entry.platform, posted.thread)
            self.store.finish_checkin_run(
                run_id,
                status="posted",
                attempts=attempts,
                thread_key=real_key,
                message_id=posted.message_id,
                permalink=posted.permalink or None,
            )
        where = posted.permalink or f"{entry.platform} channel {entry.channel}"
        return RunOutcome(entry.name, "posted", key, f"posted for {key}: {where}", posted.permalink)

    def _repo(self, entry: CheckinSettings, channel_key: str) -> str:
        return (
            entry.repo or self.store.channel_repo(channel_key) or self.settings.github.default_repo
        )

    async def _activity(self, repo: str, since: datetime) -> tuple[str, str]:
        """(for people, for the model): the repository's activity since `since`."""
        client = self.services.github
        if not repo:
            line = "**Repository activity**: no repository configured (set `repo` in [[checkins]])."
            return line, line
        if client is None:
            line = "**Repository activity**: no GitHub client configured."
            return line, line
        try:
            activity = await client.recent_activity(repo, since)
        except ToolError as exc:
            line = f"**Repository activity** in `{content.one_line(repo, 100)}`: unavailable ({content.one_line(str(exc), 200)})."
            return line, line
        return content.render_activity(activity), format_activity(activity)

    def _previous_for_model(self, previous: CheckinRun | None) -> str:
        thread = (
            self.store.get_thread(previous.thread_key) if previous and previous.thread_key else None
        )
        if thread is None:
            return content.render_previous(None, (), ())
        messages = self.store.history_messages(thread.id, after_turn=-1, upto_turn=2**62)
        return content.render_previous(thread, self.store.list_todos(thread.id), messages)

    async def _review(self, thread: ThreadRow, brief: str) -> str:
        """The model's review as a turn of the check-in's thread (a note when there is no model)."""
        if not self.secrets.model_configured:
            # The thread still starts with the check-in, for when the model is back.
            self.store.add_message(
                thread.id, None, "user", [{"type": "text", "text": brief}], status="context"
            )
            return content.NO_MODEL_LINE
        with self.store.transaction():
            turn_id = self.store.start_turn(
                thread,
                event_key=None,
                user=CHECKIN_USER,
                user_name="check-in",
                text="(weekly check-in)",
                content=[{"type": "text", "text": brief}],
            )
        reply = await self.consultant.answer_stored_turn(thread.key, turn_id)
        self.store.mark_posted(turn_id)  # it goes out inside the check-in message
        if reply.kind != "answer":
            return content.MODEL_FAILED_LINE
        return "**Review**\n\n" + strip_sign_off(reply.text)

    async def _post_with_retries(
        self, poster: CheckinPoster, entry: CheckinSettings, text: str
    ) -> tuple[PostedMessage | None, int, str]:
        """Post, retrying with backoff; (posted or None, attempts, last error)."""
        error = ""
        title = f"Check-in: {entry.name}"
        for attempt, pause in enumerate((*self.backoff, None), start=1):
            try:
                return await poster.post(entry.channel, title, text), attempt, ""
            except Exception as exc:
                error = _describe(exc)
                log.warning(
                    "check-in %s: post attempt %d to %s failed: %s",
                    entry.name,
                    attempt,
                    entry.channel,
                    error,
                )
                if pause is None:
                    return None, attempt, error
                await asyncio.sleep(pause)
        return None, 0, error


def _already(run: CheckinRun) -> str:
    if run.status == "posted":
        where = run.permalink or "(no link recorded)"
        return f"already posted for {run.period}: {where}; --force posts again"
    if run.status == "running":
        return f"already being posted for {run.period} (by another run); nothing posted"
    return f"{run.period} was {run.status} ({run.error or 'no reason recorded'}); --force posts it"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:ERROR_LIMIT]


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
