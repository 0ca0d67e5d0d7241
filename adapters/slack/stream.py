"""StreamedReply: one answer streamed into its Slack thread while the model writes it.

chat.startStream/appendStream/stopStream carry the answer and a `task_update` card
per tool call; what streaming cannot carry is posted through the outbox, and a cut
message reopens the code fence it was in. A stopped turn closes its stream with
what was already shown and sends nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import CALL_ERRORS, describe
from adapters.slack.outbox import SlackOutbox
from adapters.slack.render import MARKDOWN_LIMIT, neutralize_broadcasts
from adapters.slack.tasks import stream_content, task_chunk
from bot.events import IncomingMessage, Reply
from bot.formatting import open_fence
from bot.progress import ToolProgress
from bot.streaming import ReplyStream, rest_of_reply, token_start

log = logging.getLogger(__name__)

# Streaming: append when this much text is ready, or after this long with less (not every token).
STREAM_BATCH_CHARS = 200
STREAM_FLUSH_SECONDS = 0.5
# At most one streaming call this often: chat.appendStream is Tier 4 (100+ a minute).
STREAM_MIN_GAP_SECONDS = 0.5
# chat.startStream errors that mean "not for this app or workspace" rather than "not this time".
_STREAMING_UNSUPPORTED = frozenset(
    {
        "unknown_method",
        "method_deprecated",
        "not_allowed_token_type",
        "feature_not_enabled",
        "missing_scope",
        "invalid_arguments",
        "not_allowed",
    }
)
# Room kept in a streamed message for closing a code fence when the stream ends inside one.
_FENCE_RESERVE = 32


def fit_streamed(shown: str, text: str, limit: int = MARKDOWN_LIMIT) -> tuple[str, str]:
    """Split `text` into what still fits a streamed message already showing `shown`, and the rest.

    The cut falls on a paragraph, line or word break outside any `<...>` token (a link is
    not split across two messages), leaving room to close a code fence.
    """
    room = limit - len(shown) - _FENCE_RESERVE
    if len(text) <= room:
        return text, ""
    if room <= 0:
        return "", text
    window = text[:room]
    cut = window.rfind("\n\n")
    if cut < room // 2:
        cut = window.rfind("\n")
    if cut < room // 2:
        cut = window.rfind(" ")
    start = token_start(text, cut) if cut > 0 else -1
    if start > 0:
        cut = start
    if cut <= 0:
        cut = room
    return text[:cut], text[cut:]


class NeutralStream:
    """The model's deltas as neutralised pieces that can be joined into one Slack message.

    `ReplyStream` releases text only at whitespace outside `<...>` tokens, so each piece is
    neutralised as it would be inside the whole text, and a ping split across deltas
    (`<!chan` + `nel>`) is whole before it is neutralised.
    """

    def __init__(self) -> None:
        self._stream = ReplyStream()

    @property
    def sent(self) -> str:
        """The model's text released so far (before neutralising)."""
        return self._stream.sent

    def feed(self, delta: str) -> str:
        """Add model text; return the neutralised piece that may be shown now ("" if none)."""
        chunk = self._stream.feed(delta)
        return neutralize_broadcasts(chunk) if chunk else ""

    def rest(self, final_text: str) -> str:
        """The neutralised rest that makes the pieces read as `final_text`."""
        return neutralize_broadcasts(rest_of_reply(self._stream.sent, final_text))


def continue_after(shown: str, rest: str) -> str:
    """`rest` as the start of a new message after `shown`, reopening a code fence `shown` left open."""
    opener, _ = open_fence(shown)
    if not opener:
        return rest.lstrip("\n")
    return f"{opener}\n{rest[1:] if rest.startswith(chr(10)) else rest}"


class StreamedReply:
    """One answer streamed into a Slack thread while the model writes it.

    `feed` is the core's text sink and `progress` its tool-progress sink: both only
    buffer, and a background task sends what is ready in one call per tick
    (chat.startStream, then chat.appendStream), so a slow Slack call never stalls
    the model's stream and rate limits hold. The first tool call starts the stream,
    so its card shows while the tool runs. Whatever streaming could not carry (the
    workspace refused it, a call failed midway, or the message reached Slack's size
    limit) is posted in the same thread at `finish`, so the answer arrives whole, once.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        outbox: SlackOutbox,
        msg: IncomingMessage,
        thread_ts: str,
        recipient_team_id: str,
        *,
        on_visible: Callable[[], Awaitable[None]],
        on_unsupported: Callable[[str], None],
        closing_status: Callable[[], str | None] | None = None,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.msg = msg
        self.thread_ts = thread_ts
        self.recipient_team_id = recipient_team_id
        self._on_visible = on_visible
        self._on_unsupported = on_unsupported
        self._closing_status = closing_status
        self._stream = NeutralStream()
        self._pending = ""  # neutralised text not yet handed to Slack
        self._tasks: dict[str, dict[str, Any]] = {}  # task cards not yet handed to Slack, by id
        self._unsent = ""  # text for normal posts after the streamed message ended
        self.ts: str | None = None  # the streamed message, once chat.startStream answered
        self.shown = ""  # what the streamed message shows
        self.state = "idle"  # idle -> streaming -> stopped
        self.calls = 0  # streaming calls made (the bench counts them per turn)
        self.session_closed = False  # the final chat.stopStream set the agent session's status
        self._closing = False
        self._last_call = 0.0
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()  # ends the pump's wait between calls at once
        self._pump_task: asyncio.Task[None] | None = None

    async def feed(self, delta: str) -> None:
        """The core's text sink: buffer the safe part and let the pump send it."""
        chunk = self._stream.feed(delta)
        if not chunk or self._closing:
            return
        self._pending += chunk
        self._ensure_pump()
        if len(self._pending) >= STREAM_BATCH_CHARS:
            self._wake.set()

    async def progress(self, item: ToolProgress) -> None:
        """The core's progress sink: a tool call's card, sent with the next batch."""
        if self._closing or (self.state == "stopped" and self.ts is None):
            return  # streaming refused or over: the card has nowhere to go
        new = item.id not in self._tasks and item.status == "in_progress"
        self._tasks[item.id] = task_chunk(item)
        self._ensure_pump()
        if new:
            self._wake.set()  # a new card shows at once, below the text written before it

    def stopped_by_slack(self, timestamps: Sequence[str]) -> None:
        """Slack ended this stream (its stop button): no further streaming call may touch it."""
        if self.ts is not None and self.ts in timestamps and self.state == "streaming":
            self.state = "stopped"

    def _ensure_pump(self) -> None:
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), STREAM_FLUSH_SECONDS)
            except TimeoutError:
                pass
            gap = self._last_call + STREAM_MIN_GAP_SECONDS - loop.time()
            if gap > 0 and not self._closing:
                try:
                    await asyncio.wait_for(self._closed.wait(), gap)
                except TimeoutError:
                    pass
            self._wake.clear()
            if self._closing:
                return
            if self._pending or self._tasks:
                text, self._pending = self._pending, ""
                await self._send(text, last=False)
                self._last_call = loop.time()

    async def _stop_pump(self) -> None:
        self._closing = True
        self._wake.set()
        self._closed.set()
        task, self._pump_task = self._pump_task, None
        if task is not None:
            await task  # lets a Slack call under way finish, so order holds

    async def finish(self, reply: Reply, blocks: list[dict[str, Any]] | None = None) -> None:
        """Send what is left of `reply` (streamed, or posted), `blocks` under its last message.

        Raises when posting fails.
        """
        await self._stop_pump()
        rest = self._stream.rest(reply.text)
        text, self._pending = self._pending + rest, ""
        if self.state == "idle" and not self._stream.sent:
            # Too short to have released anything (a short answer, a command): post it whole.
            self.state = "stopped"
            self._tasks.clear()
            await self.outbox.post(self.msg.channel, self.msg.thread, reply.text, blocks)
            return
        await self._send(text, last=True, blocks=blocks)
        if self._unsent.strip():
            await self.outbox.post(self.msg.channel, self.msg.thread, self._unsent, blocks)

    async def abandon(self) -> None:
        """The turn was stopped: close the stream with what it shows (and its cards); post nothing."""
        await self._stop_pump()
        self._pending, self._unsent = "", ""
        if self.state == "streaming":
            await self._quiet_stop()
        self._tasks.clear()

    async def close(self) -> None:
        """End the streamed message if the turn ended without `finish` (it must not hang open)."""
        await self._stop_pump()
        if self.state == "streaming":
            await self._quiet_stop()
        if self.calls:
            log.debug("slack: %s streamed in %d calls", self.msg.thread_key, self.calls)

    async def _send(
        self, text: str, *, last: bool, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        """Stream `text` and the cards waiting, ending the message when `last` or when it would
        outgrow Slack's limit."""
        if self.state == "stopped":
            self._unsent += text
            self._tasks.clear()
            return
        head, tail = fit_streamed(self.shown, text)
        tasks = list(self._tasks.values())
        self._tasks.clear()
        stopping = last or bool(tail)
        try:
            if self.state == "idle":
                await self._start(head, tasks)
                head, tasks = "", []
            if stopping:
                closing = _closing_fence(self.shown + head)
                final = not tail
                status = self._closing_status() if final and self._closing_status else None
                self.calls += 1
                await self.client.chat_stopStream(
                    channel=self.msg.channel,
                    ts=str(self.ts),
                    **stream_content(head + closing, tasks),
                    blocks=blocks if final and blocks else None,
                    session_status=status,
                )
                shown_before, self.shown = self.shown + head, self.shown + head + closing
                self.state = "stopped"
                self.session_closed = status is not None
                if tail:
                    self._unsent += continue_after(shown_before, tail)
            elif head or tasks:
                self.calls += 1
                await self.client.chat_appendStream(
                    channel=self.msg.channel, ts=str(self.ts), **stream_content(head, tasks)
                )
                self.shown += head
        except Exception as exc:
            # Whatever went wrong, the text Slack did not show is posted at `finish`.
            await self._broken(exc, head + tail)

    async def _start(self, head: str, tasks: list[dict[str, Any]]) -> None:
        self.calls += 1
        response = await self.client.chat_startStream(
            channel=self.msg.channel,
            thread_ts=self.thread_ts,
            **stream_content(head, tasks),
            recipient_team_id=self.recipient_team_id or None,
            recipient_user_id=self.msg.user,
        )
        self.ts = str(response.get("ts") or "")
        self.shown = head
        self.state = "streaming"
        try:
            await self._on_visible()
        except Exception:
            # The answer is showing; a stuck indicator must not make it be sent twice.
            log.exception("slack: removing the thinking indicator in %s failed", self.msg.channel)

    async def _broken(self, exc: BaseException, not_shown: str) -> None:
        """Streaming failed: keep what Slack did not show for the normal posts at `finish`."""
        if self.state == "idle":
            error = exc.response.get("error") if isinstance(exc, SlackApiError) else None
            if error in _STREAMING_UNSUPPORTED:
                log.info(
                    "slack: streaming unavailable in workspace %s (%s); posting replies instead",
                    self.msg.workspace,
                    error,
                )
                self._on_unsupported(self.msg.workspace)
            else:
                log.warning(
                    "slack: could not start streaming in %s (%s); posting the reply instead",
                    self.msg.thread_key,
                    describe(exc),
                    exc_info=not isinstance(exc, CALL_ERRORS),
                )
            self.state = "stopped"
            self._unsent += not_shown
            return
        log.warning(
            "slack: streaming to %s broke off (%s); posting the rest",
            self.msg.thread_key,
            describe(exc),
            exc_info=not isinstance(exc, CALL_ERRORS),
        )
        shown = self.shown
        if self.state == "streaming":
            await self._quiet_stop()
        self.state = "stopped"
        self._unsent += continue_after(shown, not_shown)

    async def _quiet_stop(self) -> None:
        """Close the streamed message (its open code fence and waiting cards too); errors are only
        logged."""
        self.state = "stopped"
        tasks = list(self._tasks.values())
        self._tasks.clear()
        try:
            self.calls += 1
            await self.client.chat_stopStream(
                channel=self.msg.channel,
                ts=str(self.ts),
                **stream_content(_closing_fence(self.shown), tasks),
            )
        except CALL_ERRORS as exc:
            log.warning(
                "slack: could not end the streamed message in %s: %s",
                self.msg.thread_key,
                describe(exc),
            )


def _closing_fence(shown: str) -> str:
    """What closes a code fence left open at the end of `shown` ("" when none is open)."""
    _, closer = open_fence(shown)
    return f"\n{closer}" if closer else ""
