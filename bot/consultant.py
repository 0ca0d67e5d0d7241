"""The consultant: turns an IncomingMessage into a Reply.

A turn is: store the user's message (pending) -> build the history from
SQLite -> one model call plus one per tool round -> store the answer -> sign
off. Turns of one thread run one at a time in arrival order, and commands
that change the thread take the same order; different threads run in
parallel. Nothing the user wrote is lost when the model fails, and a turn that
fails for any other reason still ends, with a reply that points at the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.commands import CommandContext, CommandRegistry, is_command
from bot.errors import ModelUnavailable
from bot.events import IncomingMessage, Reply, TextSink
from bot.llm import ModelClient
from bot.metrics import INFLIGHT, MODEL_ERRORS, QUEUE_DEPTH, TURN_LATENCY, TURNS, TURNS_ANSWERED
from bot.ports import Outbox
from bot.progress import ProgressSink, ToolProgress, describe_call
from bot.prompts import COMPACTION_PROMPT, CONSULTANT_PROMPT
from bot.settings import Secrets, Settings
from bot.signoff import SignOffFilter, sign_off
from bot.store import (
    Store,
    StoredMessage,
    ThreadRow,
    UsageRecord,
    day_start,
    estimate_tokens,
    utcnow,
)
from bot.tools import Services, ToolContext, ToolRegistry

log = logging.getLogger(__name__)

FORWARDED_LIMIT = 8000  # characters of one forwarded message the model sees
STOPPED_REPLY = "Stopped."
# Kept in the history after what a stopped answer had written, so the model knows.
CUT_OFF_NOTE = "[This answer was cut off: it was stopped before it was finished.]"

# Read by the log formatter: every line logged during a turn carries its id.
correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._:-]")


def accept_correlation(event_id: str) -> None:
    """Tag this task's log lines from now on with the accepted event's id (neutralised, capped)."""
    correlation_id.set(_UNSAFE_ID.sub("", event_id)[:64] or "-")


UNPOSTED_MAX_AGE = timedelta(hours=1)
RECOVERY_POLL_SECONDS = 2.0  # how often a turn another process recovers is looked at again
# At most this many compaction calls in one turn: an older backlog is dropped with a note.
COMPACTION_MAX_CALLS = 8
SUMMARY_CHAR_LIMIT = 12_000
GREETING = (
    "Hi, I'm archbot, your ML systems architect. Ask me a design question here "
    "(data, training, serving, MLOps, trading systems) and I'll answer with options, "
    "trade-offs and the questions to settle first."
)
# What the model reads for a mention with no words inside a discussion.
BARE_MENTION = (
    "(mentioned you without writing anything: weigh in on the discussion so far "
    "with your view, the risks you see and what to settle next)"
)
TOOL_LIMIT_NOTE = (
    "Tool round limit reached for this turn: answer now with what you have, "
    "and say what you could not check."
)


@dataclass
class _ThreadLocks:
    """One asyncio.Lock per thread key, dropped when nobody holds or waits for it."""

    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)

    def acquire_slot(self, key: str) -> asyncio.Lock:
        self.users[key] = self.users.get(key, 0) + 1
        return self.locks.setdefault(key, asyncio.Lock())

    def release_slot(self, key: str) -> None:
        self.users[key] -= 1
        if self.users[key] == 0:
            del self.users[key]
            del self.locks[key]


def unavailable_reply(error: ModelUnavailable) -> str:
    """What users see when the model could not answer: cause, what works, message kept."""
    return (
        f"I couldn't get an answer from the model: {error}.\n\n"
        "Your message is saved in this thread's history, so you don't need to retype it: "
        'ask again (or just say "go on") once the model is back. Meanwhile these still work: '
        "`!todos`, `!todo add`, `!usage`, `!help`."
    )


def check_daily_budget(store: Store, settings: Settings, user: str) -> None:
    """Raise ModelUnavailable("budget") when `user` has spent today's token budget.

    Called before every model call of a turn (each tool round, compaction and
    delegation), so one long turn cannot run far past the budget.
    """
    budget = settings.llm.daily_token_budget_per_user
    if budget and store.tokens_used_since(user, day_start()) >= budget:
        raise ModelUnavailable(
            "budget",
            f"you have used your daily token budget ({budget:,} tokens, "
            "[llm] daily_token_budget_per_user); it resets at 00:00 UTC",
        )


def log_failure(exc: BaseException, what: str) -> str:
    """Log `exc` with its traceback under a fresh reference and return the reference."""
    ref = f"err-{uuid.uuid4().hex[:8]}"
    log.error("%s [%s]: %s", what, ref, type(exc).__name__, exc_info=exc)
    return ref


def failure_reply(exc: BaseException, ref: str) -> str:
    """What users see when a turn broke for a reason other than the model: what, and where."""
    what = "a database error" if isinstance(exc, sqlite3.Error) else "an internal error"
    return (
        f"Something went wrong on my side and I stopped working on this message: "
        f"{what} ({type(exc).__name__}). The bot's log has the details under `{ref}`.\n\n"
        'Your message is saved in this thread\'s history: ask again (or just say "go on") '
        "in a moment."
    )


def command_failure_reply(exc: BaseException, ref: str) -> str:
    """What users see when a !command broke: what, and where the details are."""
    what = "a database error" if isinstance(exc, sqlite3.Error) else "an internal error"
    return (
        f"That command failed on my side: {what} ({type(exc).__name__}). "
        f"The bot's log has the details under `{ref}`."
    )


class Consultant:
    """The platform-neutral core; adapters call `handle`."""

    def __init__(
        self,
        settings: Settings,
        secrets: Secrets,
        store: Store,
        model: ModelClient,
        tools: ToolRegistry,
        commands: CommandRegistry,
        services: Services | None = None,
        system_prompt: str = CONSULTANT_PROMPT,
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.store = store
        self.model = model
        self.tools = tools
        self.commands = commands
        self.services = services or Services(model=model)
        self.system_prompt = system_prompt
        self._locks = _ThreadLocks()
        self._running: dict[str, _RunningTurn] = {}  # thread key -> its turn running here
        # Half the history budget, at about 4 characters a token.
        self._message_limit = max(4000, settings.llm.history_token_budget * 2)
        self.started_at = utcnow()
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # entry points ----------------------------------------------------------------

    def knows_thread(self, thread_key: str) -> bool:
        """True when the bot has taken part in this thread (so it answers without a mention)."""
        thread = self.store.get_thread(thread_key)
        return thread is not None and (
            thread.joined
            or thread.context_imported
            or thread.checkin is not None
            or self.store.thread_has_turns(thread.id)
        )

    def accept(self, msg: IncomingMessage) -> None:
        """Join the message's thread now, before any await, so follow-ups need no mention.

        Adapters call this the moment they decide to answer a mention (or a DM),
        so a follow-up typed a second later, while the first turn is still
        reading context or queued, is answered too.
        """
        if self.allowed(msg):
            with self.store.transaction():
                self.store.join_thread(msg)

    def allowed(self, msg: IncomingMessage) -> bool:
        """Access rules from [access]; DMs are not subject to the channel list."""
        if msg.platform == "console":  # the local operator
            return True
        access = self.settings.access
        if not access.user_allowed(msg.user):
            return False
        return msg.is_dm or access.channel_allowed(msg.channel)

    async def handle(
        self,
        msg: IncomingMessage,
        on_text: TextSink | None = None,
        on_queued: Callable[[], None] | None = None,
        on_progress: ProgressSink | None = None,
    ) -> Reply | None:
        """Answer one message; None when it is a redelivery, not allowed, or has nothing to post.

        `on_text`, if given, receives the answer's text while the model writes
        it (for platforms that stream); the returned Reply is still the whole,
        signed-off answer. `on_queued`, if given, is called once the message is
        stored and has its place in its thread's order (or was turned away), so
        an adapter that must await something before calling `handle` can hold
        the thread's next message until then, and no longer. `on_progress`, if
        given, hears of each tool call as it starts and ends.

        A turn stopped with `stop` returns a Reply of kind "stopped" ("Stopped.");
        a `!stop` that stopped one returns None, since the stopped turn says so.
        """
        queued = _Once(on_queued)
        self._inflight += 1
        self._idle.clear()
        INFLIGHT.inc()
        try:
            return await self._handle(msg, on_text, queued, on_progress)
        finally:
            queued()
            INFLIGHT.dec()
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def drain(self, seconds: float) -> bool:
        """Wait until no turn is in flight (at most `seconds`); False if some still run."""
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def stop(self, thread_key: str, user: str = "") -> bool:
        """Stop the turn running in a thread now; False when none runs here.

        The turn's model call (or tool call) is cancelled at once; the turn
        itself then stores what was written as cut off and answers "Stopped.".
        Turns queued behind it are answered as usual.
        """
        running = self._running.get(thread_key)
        if running is None or running.task is None or running.task.done() or running.stopping:
            return False
        running.stopping = True
        log.info("stopping turn %s in %s (asked by %s)", running.turn_id, thread_key, user or "-")
        running.task.cancel()
        TURNS.labels(outcome="stopped").inc()
        return True

    def running_turn(self, thread_key: str) -> int | None:
        """The id of the turn running in a thread in this process, if any."""
        running = self._running.get(thread_key)
        return running.turn_id if running is not None else None

    async def _handle(
        self,
        msg: IncomingMessage,
        on_text: TextSink | None,
        queued: _Once,
        on_progress: ProgressSink | None = None,
    ) -> Reply | None:
        if not msg.has_content and not msg.mentioned:
            log.debug("ignoring %s: nothing to read", msg.event_id)
            return None
        if not self.allowed(msg):
            log.info(
                "ignoring message from %s in %s: not allowed by [access]", msg.user, msg.channel
            )
            return None
        event_key = f"{msg.platform}:{msg.workspace}:{msg.event_id}" if msg.event_id else None
        command = is_command(msg.text)
        try:
            with self.store.transaction():
                if event_key is not None and not self.store.claim_event(event_key):
                    log.info("duplicate delivery of %s ignored", event_key)
                    return None
                thread = self.store.ensure_thread_for(msg)
                if msg.prior_context and not thread.context_imported:
                    self.store.import_context(thread.id, msg.prior_context)
                turn_id = None
                if not command:
                    if not msg.has_content and not self._has_history(thread):
                        # A bare mention with nothing to weigh in on: say hello, no model call.
                        return Reply(sign_off(self._greeting()), thread.key, kind="notice")
                    turn_id = self.store.start_turn(
                        thread,
                        event_key=event_key,
                        user=msg.user,
                        user_name=msg.user_name,
                        text=msg.text,
                        content=[
                            {
                                "type": "text",
                                "text": cap_text(self._user_text(msg), self._message_limit),
                            }
                        ],
                    )
        except Exception as exc:
            # Rolled back, event claim included: a redelivery gets another chance.
            ref = log_failure(exc, f"storing a message in {msg.thread_key} failed")
            return Reply(sign_off(failure_reply(exc, ref)), msg.thread_key, kind="error")
        # Stored: its place in the thread's order is taken below, before anything awaits.
        queued()
        if command:
            if self.commands.is_read_only(msg.text):
                return await self._run_command(msg, thread)
            # Same order as the thread's turns: `!forget` must not pull the
            # question out from under a running turn's next tool round.
            async with self._thread_order(thread.key):
                return await self._run_command(msg, self.store.get_thread_by_id(thread.id))
        assert turn_id is not None
        return await self._locked_turn(thread.key, turn_id, on_text, on_progress)

    async def recover_pending(self, outboxes: Mapping[str, Outbox]) -> int:
        """Complete turns a crash interrupted and post their answers; return how many.

        Only turns from before this process started: the adapters are already
        live, and their own turns must not be answered twice. Each turn is
        claimed in the database first, so of several processes started on one
        file (a rolling deploy) one answers it; a turn another live process
        holds is waited for, and taken over if that process dies.
        """
        done = 0
        tried: set[int] = set()
        waited: set[int] = set()
        while True:
            # Answers stored but never posted (a crash between the two), if still fresh.
            fresh_since = (datetime.now(UTC) - UNPOSTED_MAX_AGE).isoformat(timespec="microseconds")
            try:
                turns = self.store.pending_turns(created_before=self.started_at)
                turns += self.store.unposted_turns(fresh_since, self.started_at)
            except Exception as exc:
                # Logged where an operator looks, not lost in a background task.
                log_failure(exc, "recovery at start could not list the interrupted turns")
                return done
            held_elsewhere = False
            for listed in turns:
                try:
                    thread = self.store.get_thread_by_id(listed.thread_id)
                    outbox = outboxes.get(thread.platform)
                    if outbox is None or listed.id in tried:
                        continue
                    async with self.store.recovery_claim(listed.id) as claimed:
                        turn = self.store.get_turn(listed.id)  # as it is now, not when listed
                        if not claimed:
                            if turn.posted_at is None:
                                held_elsewhere = True
                                if turn.id not in waited:
                                    waited.add(turn.id)
                                    log.info(
                                        "turn %s is being recovered by another process", turn.id
                                    )
                            continue
                        tried.add(turn.id)
                        if turn.status == "pending":
                            log.info("recovering interrupted turn %s in %s", turn.id, thread.key)
                            reply = await self._locked_turn(thread.key, turn.id)
                        elif turn.reply:
                            log.info(
                                "posting stored answer of turn %s that never reached %s",
                                turn.id,
                                thread.key,
                            )
                            reply = Reply(turn.reply, thread.key, kind="answer", turn_id=turn.id)
                        else:
                            continue
                        await self.deliver(outbox, thread, reply)
                        done += 1
                except Exception as exc:
                    # One broken turn must not keep the others from being answered.
                    tried.add(listed.id)
                    log_failure(exc, f"recovering turn {listed.id} failed")
            if not held_elsewhere:
                log.info("recovery at start finished: %d turn(s) answered or posted", done)
                return done
            # Another process is recovering some of them: wait for it, or for its lease to lapse.
            await asyncio.sleep(RECOVERY_POLL_SECONDS)

    async def deliver(self, outbox: Outbox, thread: ThreadRow, reply: Reply) -> None:
        """Post a reply through an outbox and record it as delivered."""
        try:
            await outbox.post(thread.channel, thread.thread or None, reply.text)
        except Exception:
            log.exception("posting to %s failed; the answer stays stored", thread.key)
            return
        self.mark_delivered(reply)

    def mark_delivered(self, reply: Reply) -> None:
        """Adapters call this once a reply reached the platform."""
        if reply.turn_id is not None:
            self.store.mark_posted(reply.turn_id)

    # internals ---------------------------------------------------------------------

    def _has_history(self, thread: ThreadRow) -> bool:
        """True when the thread holds something to discuss: turns, imported context, a summary."""
        return thread.summary is not None or (
            self.store.history_tokens(thread.id, after_turn=-1, upto_turn=2**62) > 0
        )

    def _greeting(self) -> str:
        return f"{GREETING}\n\n{self.commands.help_text()}"

    def _user_text(self, msg: IncomingMessage) -> str:
        text = render_user_text(msg) or BARE_MENTION
        if msg.platform == "console":
            return text
        return f"{msg.user_name or msg.user}: {text}"

    async def _run_command(self, msg: IncomingMessage, thread: ThreadRow) -> Reply | None:
        ctx = CommandContext(
            self.store, self.settings, self.secrets, msg, thread, self.services, stop=self.stop
        )
        try:
            body = await self.commands.run(ctx, msg.text)
        except Exception as exc:
            ref = log_failure(exc, f"command {msg.text.split()[0][:40]!r} in {thread.key} failed")
            return Reply(sign_off(command_failure_reply(exc, ref)), thread.key, kind="error")
        if ctx.silent:  # the command's effect answers for it (a stopped turn says "Stopped.")
            return None
        return Reply(sign_off(body), thread.key, kind="command", files=tuple(ctx.files))

    @contextlib.asynccontextmanager
    async def _thread_order(self, key: str) -> AsyncIterator[None]:
        """Wait for the thread's earlier turns and commands, in arrival order."""
        lock = self._locks.acquire_slot(key)
        QUEUE_DEPTH.inc()
        waiting = True
        try:
            async with lock:
                QUEUE_DEPTH.dec()
                waiting = False
                yield
        finally:
            if waiting:  # cancelled while queued
                QUEUE_DEPTH.dec()
            self._locks.release_slot(key)

    async def answer_stored_turn(self, thread_key: str, turn_id: int) -> Reply:
        """Answer a turn stored by another part of the core (a check-in's review), in order."""
        return await self._locked_turn(thread_key, turn_id)

    async def _locked_turn(
        self,
        key: str,
        turn_id: int,
        on_text: TextSink | None = None,
        on_progress: ProgressSink | None = None,
    ) -> Reply:
        with TURN_LATENCY.time():
            async with self._thread_order(key):
                event = correlation_id.get()  # the adapter's id, when it set one: lines join up
                turn = f"turn-{turn_id}"
                token = correlation_id.set(turn if event == "-" else f"{event}/{turn}")
                try:
                    return await self._stoppable_turn(key, turn_id, on_text, on_progress)
                finally:
                    correlation_id.reset(token)

    async def _stoppable_turn(
        self,
        key: str,
        turn_id: int,
        on_text: TextSink | None,
        on_progress: ProgressSink | None,
    ) -> Reply:
        """Run the turn in this task, which `stop` cancels; a stop's cancel is taken back here.

        Not a task of its own: that cost a task and two loop passes every turn.
        """
        current = asyncio.current_task()
        running = _RunningTurn(turn_id, task=current)
        self._running[key] = running
        try:
            return await self._run_turn(key, turn_id, on_text, on_progress, running)
        except asyncio.CancelledError:
            if not running.stopping or current is None or current.cancelling() > 1:
                raise  # shutdown, not (only) a stop: the turn stays pending and is recovered
            current.uncancel()
            return self._stopped(key, turn_id, running)
        finally:
            if self._running.get(key) is running:
                del self._running[key]

    def _stopped(self, key: str, turn_id: int, running: _RunningTurn) -> Reply:
        """Store a stopped turn: its question, what was written so far (cut off), "Stopped."."""
        reply = sign_off(STOPPED_REPLY)
        written = running.live.strip()
        cut = f"{written}\n\n{CUT_OFF_NOTE}" if written else CUT_OFF_NOTE
        try:
            turn = self.store.get_turn(turn_id)
            with self.store.transaction():
                self.store.add_message(
                    turn.thread_id, turn_id, "assistant", [{"type": "text", "text": cut}]
                )
                self.store.finish_turn(turn_id, status="stopped", reply=reply)
        except Exception as exc:
            ref = log_failure(exc, f"storing stopped turn {turn_id} failed")
            return Reply(sign_off(failure_reply(exc, ref)), key, kind="error", turn_id=turn_id)
        log.info("turn %s stopped; %d characters of its answer kept", turn_id, len(written))
        return Reply(reply, key, kind="stopped", turn_id=turn_id)

    async def _run_turn(
        self,
        key: str,
        turn_id: int,
        on_text: TextSink | None,
        on_progress: ProgressSink | None,
        running: _RunningTurn,
    ) -> Reply:
        try:
            return await self._turn(turn_id, on_text, on_progress, running)
        except Exception as exc:
            # A store error, a bug or an SDK surprise: the turn still ends, with a
            # reply and a reference to the logged traceback, never pending and silent.
            ref = log_failure(exc, f"turn {turn_id} failed")
            reply = sign_off(failure_reply(exc, ref))
            try:
                self.store.finish_turn(
                    turn_id, status="failed", reply=reply, error=f"internal {ref}"
                )
            except Exception:
                log.exception(
                    "turn %s could not be marked failed [%s]; it is retried at the next start",
                    turn_id,
                    ref,
                )
            TURNS.labels(outcome="internal_error").inc()
            return Reply(reply, key, kind="error", turn_id=turn_id)

    async def _turn(
        self,
        turn_id: int,
        on_text: TextSink | None,
        on_progress: ProgressSink | None,
        running: _RunningTurn,
    ) -> Reply:
        turn = self.store.get_turn(turn_id)
        if turn.status != "pending":  # finished by another process or an earlier attempt
            return Reply(
                turn.reply or sign_off(""),
                self.store.get_thread_by_id(turn.thread_id).key,
                kind="answer",
                turn_id=turn_id,
            )
        # Read after taking the lock: a turn ahead of this one may have compacted the thread.
        thread = self.store.get_thread_by_id(turn.thread_id)
        try:
            if await self._compact_if_needed(thread, turn_id, turn.user):
                thread = self.store.get_thread_by_id(turn.thread_id)
            sink = _RoundSeparatedSink(on_text) if on_text is not None else None
            shown, final, usage = await self._tool_loop(
                thread, turn_id, turn.user, sink, _ProgressReporter(on_progress), running
            )
            if sink is not None:
                # The ledger row goes in before anything awaits (a stop, a crash): the call is billed.
                self._record_usage(usage, thread, turn_id, turn.user)
                usage = None
                await sink.finish()
        except ModelUnavailable as exc:
            # Offline mode is a setting, not an incident.
            level = logging.INFO if exc.cause == "no_key" else logging.WARNING
            log.log(level, "turn %s: model unavailable (%s)", turn_id, exc.cause)
            reply = sign_off(unavailable_reply(exc))
            self.store.finish_turn(turn_id, status="failed", reply=reply, error=exc.cause)
            TURNS.labels(outcome=exc.cause).inc()
            MODEL_ERRORS.labels(cause=exc.cause).inc()
            return Reply(reply, thread.key, kind="error", turn_id=turn_id)
        reply = sign_off(shown or "(The model returned an empty answer.)")
        try:
            with self.store.transaction():
                # The last call's ledger row and the answer: one commit, nothing awaited
                # since the call returned.
                self._record_usage(usage, thread, turn_id, turn.user)
                # History keeps the last round's text; earlier rounds' text is already
                # stored with their tool calls (so nothing appears twice to the model).
                self.store.add_message(
                    thread.id, turn_id, "assistant", [{"type": "text", "text": sign_off(final)}]
                )
                self.store.finish_turn(turn_id, status="done", reply=reply)
        except Exception:
            if usage is not None:  # the answer is lost, the call was still billed
                with contextlib.suppress(Exception):
                    self._record_usage(usage, thread, turn_id, turn.user)
            raise
        TURNS_ANSWERED.inc()
        return Reply(reply, thread.key, kind="answer", turn_id=turn_id)

    def _record_usage(
        self, usage: UsageRecord | None, thread: ThreadRow, turn_id: int, user: str
    ) -> None:
        if usage is not None:
            self.store.record_usage(
                usage,
                thread_id=thread.id,
                channel_key=thread.channel_key,
                user=user,
                turn_id=turn_id,
            )

    def _check_budget(self, user: str) -> None:
        check_daily_budget(self.store, self.settings, user)

    async def _tool_loop(
        self,
        thread: ThreadRow,
        turn_id: int,
        user: str,
        sink: _RoundSeparatedSink | None,
        progress: _ProgressReporter,
        running: _RunningTurn,
    ) -> tuple[str, str, UsageRecord | None]:
        """Run model calls and tools; return (all rounds' text as shown, the last round's text,
        the last call's usage if it is still to be stored).

        The first, with the sign-off rule applied, is what `sink` passed on. Each
        tool round's usage is stored before its tools run; the last call's is left
        to the caller, to store with the answer.
        """
        rounds = self.settings.llm.max_tool_rounds
        ctx = ToolContext(
            store=self.store,
            settings=self.settings,
            secrets=self.secrets,
            thread=thread,
            user=user,
            services=self.services,
            turn_id=turn_id,
        )
        # Listed once per turn: extension tools stay the same while their servers run.
        tool_defs = await self.tools.schemas_for(ctx)
        repo: list[str | None] = []  # looked up at the first tool call: most turns make none

        def default_repo() -> str | None:
            if not repo:
                repo.append(
                    thread.repo
                    or self.store.channel_repo(thread.channel_key)
                    or self.settings.github.default_repo
                    or None
                )
            return repo[0]

        shown: list[str] = []

        async def seen(text: str) -> None:
            running.live += text  # what a stop keeps of this round
            if sink is not None:
                await sink.send(text)

        for round_no in range(rounds + 1):
            last_round = round_no == rounds
            if sink is not None:
                sink.new_round()
            running.live = ""
            self._check_budget(user)  # before every call: one turn may run many rounds
            result = await self.model.complete(
                system=self.system_prompt,
                messages=self.history(thread, upto_turn=turn_id),
                tools=tool_defs,
                purpose="chat",
                thread_id=thread.id,
                channel_key=thread.channel_key,
                user=user,
                tool_choice={"type": "none"} if last_round and rounds > 0 else None,
                on_text=seen if sink is not None else None,
                turn_id=turn_id,
                defer_usage=True,
            )
            running.live = result.raw_text
            # What users see is what was streamed: raw round texts, a blank line
            # between rounds (the sink adds the same separator).
            if result.raw_text:
                shown.append(result.raw_text)
            uses = result.tool_uses
            if result.stop_reason != "tool_use" or not uses:
                return "\n\n".join(shown), result.text, result.usage
            self._record_usage(result.usage, thread, turn_id, user)
            if sink is not None:
                await sink.end_round()  # the round's text is whole: show it before the tools run
            results: list[dict[str, Any]] = []
            for use in uses:
                if last_round:
                    output, is_error = TOOL_LIMIT_NOTE, True
                else:
                    item = describe_call(use["id"], use["name"], use.get("input"), default_repo())
                    await progress.report(item)
                    try:
                        output, is_error = await self.tools.call(use["name"], use.get("input"), ctx)
                    except asyncio.CancelledError:
                        if running.stopping:  # the card must not spin on in a closed stream
                            await progress.report(item.finished(False))
                        raise
                    await progress.report(item.finished(not is_error))
                    output = cap_text(output, self._message_limit)
                block: dict[str, Any] = {
                    "type": "tool_result",
                    "tool_use_id": use["id"],
                    "content": output,
                }
                if is_error:
                    block["is_error"] = True
                results.append(block)
            # The tool call and its results are stored together, so a crash
            # never leaves a tool_use without its result in the history.
            with self.store.transaction():
                self.store.add_message(
                    thread.id, turn_id, "assistant", result.content, status="pending"
                )
                self.store.add_message(thread.id, turn_id, "user", results, status="pending")
            if last_round:  # a server that ignored tool_choice "none"
                if not result.text:
                    shown.append(TOOL_LIMIT_NOTE)
                return "\n\n".join(shown), result.text or TOOL_LIMIT_NOTE, None
        return "\n\n".join(shown), "", None

    def history(self, thread: ThreadRow, upto_turn: int | None = None) -> list[dict[str, Any]]:
        """The thread's messages for a request: summary first, same roles merged.

        `upto_turn` (default: everything) leaves out turns queued behind the current one.
        """
        stored = self.store.history_messages(
            thread.id, after_turn=_summarised_until(thread), upto_turn=upto_turn or 2**62
        )
        merged: list[dict[str, Any]] = []
        limit = self._message_limit
        for m in stored:
            # One huge stored message (a pasted log, an old build's tool output)
            # must not make every later request too long.
            content = _capped_blocks(m.content, limit) if m.tokens * 4 > limit else m.content
            if merged and merged[-1]["role"] == m.role:
                merged[-1]["content"] = merged[-1]["content"] + content
            else:
                merged.append({"role": m.role, "content": list(content)})
        if thread.summary:
            summary_block = {
                "type": "text",
                "text": f"Summary of the earlier conversation in this thread:\n{thread.summary}",
            }
            if merged and merged[0]["role"] == "user":
                merged[0]["content"] = [summary_block, *merged[0]["content"]]
            else:
                merged.insert(0, {"role": "user", "content": [summary_block]})
        if merged and merged[0]["role"] != "user":
            merged.insert(
                0, {"role": "user", "content": [{"type": "text", "text": "(conversation start)"}]}
            )
        return merged

    async def _compact_if_needed(self, thread: ThreadRow, turn_id: int, user: str) -> bool:
        """Summarise the oldest turns when the history exceeds its budget; True if it did.

        The transcript goes to the model in chunks of at most half the budget,
        each folded into the summary so far (and saved, so progress survives a
        failure). A backlog of more than COMPACTION_MAX_CALLS chunks loses its
        oldest part, and a compaction the model refuses drops the turns it
        covered: either way with a note in the summary, so no thread is stuck
        with a history that fails every turn.
        """
        budget = self.settings.llm.history_token_budget
        after = _summarised_until(thread)
        total = self.store.history_tokens(thread.id, after_turn=after, upto_turn=turn_id)
        if total + estimate_tokens(thread.summary or "") <= budget:
            return False
        stored = self.store.history_messages(thread.id, after_turn=after, upto_turn=turn_id)
        # Whole turns, oldest first; keep the newest within half the budget
        # (the current turn always stays) and summarise the rest.
        sizes: dict[int, int] = {}
        for m in stored:
            sizes[m.turn_id or 0] = sizes.get(m.turn_id or 0, 0) + m.tokens
        turns = sorted(sizes)
        kept = sizes[turns[-1]]
        cut = len(turns) - 1
        while cut > 0 and kept + sizes[turns[cut - 1]] <= budget // 2:
            cut -= 1
            kept += sizes[turns[cut]]
        if cut == 0:
            return False
        until_turn = turns[cut - 1]
        chunks = _turn_chunks(
            [m for m in stored if (m.turn_id or 0) <= until_turn], chunk_tokens=budget // 2
        )
        summary = thread.summary
        # Notes stay outside what the model reads and writes, so a fold cannot lose them.
        notes: list[str] = []
        if len(chunks) > COMPACTION_MAX_CALLS:
            dropped = chunks[:-COMPACTION_MAX_CALLS]
            chunks = chunks[-COMPACTION_MAX_CALLS:]
            count = sum(len(c) for c in dropped)
            notes.append(
                f"({count:,} older messages of this thread were dropped from memory without a "
                "summary: too many to summarise at once.)"
            )
            self.store.set_summary(thread.id, _with_notes(summary, notes), _last_turn(dropped[-1]))
            log.warning("%s: dropped %d old messages unsummarised (backlog)", thread.key, count)
        for number, chunk in enumerate(chunks):
            try:
                self._check_budget(user)
                summary = await self._summarise(thread, user, summary, chunk)
            except ModelUnavailable as exc:
                # Away (timeout, 429, no key) is worth another try next turn; a refusal
                # (a 400 such as "prompt is too long") would come back every turn.
                # Other errors (a locked database) end this turn and keep the history.
                if exc.cause != "error":
                    raise
                reason = str(exc)
                log.warning("%s: compaction refused by the model: %s", thread.key, reason)
            else:
                self.store.set_summary(thread.id, _with_notes(summary, notes), _last_turn(chunk))
                continue
            count = sum(len(c) for c in chunks[number:])
            notes.append(
                f"({count:,} earlier messages of this thread could not be summarised ({reason}) "
                "and were dropped from memory.)"
            )
            self.store.set_summary(thread.id, _with_notes(summary, notes), until_turn)
            break
        log.info("compacted %d turns of %s into a summary", cut, thread.key)
        return True

    async def _summarise(
        self, thread: ThreadRow, user: str, summary: str | None, chunk: list[StoredMessage]
    ) -> str:
        """Fold one chunk of the transcript into the summary so far."""
        transcript = render_transcript(chunk)
        if len(transcript) > self._message_limit:  # one turn bigger than a chunk
            transcript = transcript[: self._message_limit] + "\n[... the rest of this turn is cut]"
        prior = f"Summary so far:\n{summary}\n\n" if summary else ""
        result = await self.model.complete(
            system=COMPACTION_PROMPT,
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "text", "text": f"{prior}Transcript:\n{transcript}"}],
                }
            ],
            purpose="compaction",
            thread_id=thread.id,
            channel_key=thread.channel_key,
            user=user,
            max_tokens=1500,
        )
        if not result.text:
            raise ModelUnavailable("error", "the model returned an empty summary")
        return result.text[:SUMMARY_CHAR_LIMIT]


def cap_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying so when it was cut."""
    if len(text) <= limit:
        return text
    keep = max(0, limit - 100)  # room for the note: a cut text is never cut again
    return f"{text[:keep]}\n\n[... cut: {len(text):,} characters, the first {keep:,} kept]"


def _capped_blocks(content: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Copies of content blocks with long text and tool output cut (the stored ones stay)."""
    out: list[dict[str, Any]] = []
    for block in content:
        if block.get("type") == "text" and len(block.get("text", "")) > limit:
            block = {**block, "text": cap_text(block["text"], limit)}
        elif block.get("type") == "tool_result" and isinstance(block.get("content"), str):
            block = {**block, "content": cap_text(block["content"], limit)}
        out.append(block)
    return out


def _turn_chunks(messages: list[StoredMessage], chunk_tokens: int) -> list[list[StoredMessage]]:
    """Split messages into runs of whole turns of at most `chunk_tokens` (one big turn alone)."""
    turns: dict[int, list[StoredMessage]] = {}
    for m in messages:
        turns.setdefault(m.turn_id or 0, []).append(m)
    chunks: list[list[StoredMessage]] = []
    size = 0
    for turn_messages in turns.values():
        turn_size = sum(m.tokens for m in turn_messages)
        if not chunks or size + turn_size > chunk_tokens:
            chunks.append([])
            size = 0
        chunks[-1].extend(turn_messages)
        size += turn_size
    return chunks


def _last_turn(chunk: list[StoredMessage]) -> int:
    return chunk[-1].turn_id or 0


def _with_notes(summary: str | None, notes: list[str]) -> str | None:
    """The summary with notes appended, its newest part kept when it grows too long."""
    text = "\n\n".join(x for x in (summary, *notes) if x)
    return text[-SUMMARY_CHAR_LIMIT:] if text else summary


class _RoundSeparatedSink:
    """Forwards text deltas, with a blank line between rounds, and never fails the turn.

    Text passes through the sign-off filter, so what the platform shows is
    always the beginning of the signed-off reply (a sign-off line the model
    wrote mid-answer is never shown and then taken back).
    """

    def __init__(self, sink: TextSink) -> None:
        self._sink: TextSink | None = sink
        self._filter = SignOffFilter()
        self._wrote = False
        self._separate = False

    def new_round(self) -> None:
        self._separate = self._wrote

    async def send(self, text: str) -> None:
        if not text:
            return
        if self._separate:
            text, self._separate = "\n\n" + text, False
        self._wrote = True
        await self._forward(self._filter.feed(text))

    async def end_round(self) -> None:
        """A round's text is complete (tools run next): pass on what the filter holds."""
        await self._forward(self._filter.flush())

    async def finish(self) -> None:
        """The answer is complete: pass on what the filter still holds."""
        await self._forward(self._filter.flush())

    async def _forward(self, text: str) -> None:
        if self._sink is None or not text:
            return
        try:
            await self._sink(text)
        except Exception:
            # A platform hiccup while streaming must not lose the answer: the
            # adapter still gets the whole Reply and can post it.
            log.exception("streaming text to the platform failed; continuing without it")
            self._sink = None


@dataclass
class _RunningTurn:
    """A turn running in this process: its task (for `stop`) and the text of its round."""

    turn_id: int
    task: asyncio.Task[Any] | None = None  # the task the turn runs in (the caller's)
    live: str = ""  # this round's text so far: a stop keeps it, cut off
    stopping: bool = False


class _ProgressReporter:
    """Passes tool progress to the adapter's sink; a failing sink never fails the turn."""

    def __init__(self, sink: ProgressSink | None) -> None:
        self._sink = sink

    async def report(self, item: ToolProgress) -> None:
        """Tell the adapter; on an adapter error, log once and stop telling it."""
        if self._sink is None:
            return
        try:
            await self._sink(item)
        except Exception:
            log.exception("showing tool progress failed; continuing without it")
            self._sink = None


class _Once:
    """Calls a callback at most once (the first call wins)."""

    def __init__(self, callback: Callable[[], None] | None) -> None:
        self._callback = callback

    def __call__(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


def render_user_text(msg: IncomingMessage, limit: int = FORWARDED_LIMIT) -> str:
    """The message's words for the model: its text, then forwarded words and named files."""
    parts = [msg.text.strip()] if msg.text.strip() else []
    for fwd in msg.forwarded:
        who = f" from {fwd.author}" if fwd.author else ""
        where = f" ({fwd.source})" if fwd.source else ""
        body = fwd.text.strip()
        if len(body) > limit:
            body = body[:limit] + " [...cut]"
        quoted = "\n".join(f"> {line}" for line in body.splitlines()) or "> (no text)"
        parts.append(f"[Forwarded message{who}{where}]\n{quoted}")
    for att in msg.attachments:
        details = ", ".join(
            x for x in (att.mimetype, _human_size(att.size) if att.size is not None else "") if x
        )
        parts.append(f"[Attached file: {att.name}" + (f" ({details})" if details else "") + "]")
    return "\n\n".join(parts)


def _human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _summarised_until(thread: ThreadRow) -> int:
    """The last turn folded into the summary; -1 keeps imported context (turn 0) in view."""
    return thread.summary_until if thread.summary is not None else -1


def render_transcript(messages: list[StoredMessage], limit: int = 2000) -> str:
    """Messages as plain text for the compaction prompt; long tool output is cut."""
    lines: list[str] = []
    for m in messages:
        for b in m.content:
            kind = b.get("type")
            if kind == "text":
                lines.append(f"{m.role}: {b['text']}")
            elif kind == "tool_use":
                lines.append(f"assistant called {b['name']}({b.get('input')})")
            elif kind == "tool_result":
                content = b.get("content")
                text = content if isinstance(content, str) else str(content)
                lines.append(f"tool result: {text[:limit]}")
    return "\n".join(lines)
