"""The Slack adapter: slack-bolt AsyncApp over Socket Mode or HTTP (`POST /slack/events`).

Pure functions at the top turn Events API payloads into the core's
`IncomingMessage` and the core's Markdown into Slack-safe parts; the
`SlackAdapter` below wires them to bolt; `StreamedReply` streams an answer into
its thread while the model writes it (chat.startStream/appendStream/stopStream)
and posts what streaming cannot carry. Bolt acknowledges events before the
listener runs (`process_before_response=False`), so slow model turns never
delay the ack. Exactly-once is the core's job: it records each message's key
in SQLite. The key is the message's channel and `ts`, not the envelope's
`event_id`, because Slack sends a channel mention twice (as `app_mention` and
as `message`) with different event ids but the same message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.middleware.authorization.async_single_team_authorization import (
    AsyncSingleTeamAuthorization,
)
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.app import Core
from bot.errors import ArchbotError, ConfigError
from bot.events import ContextMessage, IncomingMessage, Reply, thread_key
from bot.formatting import open_fence, split_markdown
from bot.settings import Secrets, Settings
from bot.streaming import ReplyStream, rest_of_reply

log = logging.getLogger(__name__)

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
SLASH_COMMAND = "/archbot"
# Slack accepts up to 12,000 characters of `markdown_text` (or one markdown block) per message.
MARKDOWN_LIMIT = 12_000
THINKING_REACTION = "hourglass_flowing_sand"
THINKING_STATUS = "is thinking..."
CONTEXT_LIMIT = 200  # earlier thread messages read when called into a discussion
STOP_SECONDS = 10.0
# Message subtypes that are a person writing; edits, joins and deletions are not.
_HUMAN_SUBTYPES = frozenset({None, "", "file_share", "thread_broadcast", "me_message"})
_SEEN_CAPACITY = 10_000
# Streaming: append when this much text is ready, or after this long with less (not every token).
STREAM_BATCH_CHARS = 200
STREAM_FLUSH_SECONDS = 0.5
# A workspace that refused chat.startStream is asked again after this long (an admin may enable it).
STREAMING_RECHECK_SECONDS = 3600.0
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
# What a Web API call raises when Slack says no or cannot be reached (slack-sdk's async
# client lets aiohttp's connection errors through once its retry handlers give up).
CALL_ERRORS: tuple[type[BaseException], ...] = (
    SlackClientError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)

# <@U123>, <@W123> and <@U123|label>: user mentions as the Events API encodes them.
_USER_MENTION = re.compile(r"<@(?P<id>[UW][A-Z0-9]+)(?:\|[^>]*)?>")
# <!channel>, <!here>, <!everyone>, optionally with a label: <!here|here>.
_BROADCAST = re.compile(r"<!(?P<name>channel|here|everyone)(?:\|[^>]*)?>", re.IGNORECASE)
# <!subteam^S123> and <!subteam^S123|@platform-team>: user-group pings.
_SUBTEAM = re.compile(r"<!subteam\^(?P<id>[A-Z0-9]+)(?:\|@?(?P<label>[^>]*))?>", re.IGNORECASE)
# The bare words, which some renderers also turn into pings.
_BARE_BROADCAST = re.compile(r"(?<![\w@])@(?P<name>channel|here|everyone)\b", re.IGNORECASE)
# A zero-width space after "@" keeps the text readable and pings nobody.
_ZWSP = "\u200b"


# ---------------------------------------------------------------------------------------
# pure translation functions (tested on recorded payloads in tests/data/slack/)


def strip_mentions(text: str, bot_user_id: str | None) -> str:
    """Remove the bot's own mentions (`<@U…>`, `<@W…>`, `<@U…|label>`); keep other people's."""

    def drop(match: re.Match[str]) -> str:
        return "" if bot_user_id is None or match.group("id") == bot_user_id else match.group(0)

    if bot_user_id is None:
        # Without the bot's id only a leading mention can safely be taken for ours.
        stripped = (
            _USER_MENTION.sub(drop, text, count=1) if _USER_MENTION.match(text.lstrip()) else text
        )
    else:
        stripped = _USER_MENTION.sub(drop, text)
    return re.sub(r"[ \t]{2,}", " ", stripped).strip()


def mentions_user(text: str, user_id: str | None) -> bool:
    """True when `text` mentions `user_id` in any of Slack's encodings."""
    if not user_id:
        return False
    return any(m.group("id") == user_id for m in _USER_MENTION.finditer(text))


def neutralize_broadcasts(text: str) -> str:
    """Make `<!channel>`, `<!here>`, `<!everyone>` and `<!subteam^…>` readable text that pings nobody."""
    text = _BROADCAST.sub(lambda m: f"@{_ZWSP}{m.group('name').lower()}", text)
    text = _SUBTEAM.sub(
        lambda m: f"@{_ZWSP}{(m.group('label') or 'subteam').strip() or 'subteam'}", text
    )
    return _BARE_BROADCAST.sub(lambda m: f"@{_ZWSP}{m.group('name')}", text)


def render_parts(text: str, limit: int = MARKDOWN_LIMIT) -> list[str]:
    """The Markdown parts one reply is posted as: neutralised, split outside code fences."""
    return split_markdown(neutralize_broadcasts(text), limit) or [""]


def is_dm(event: Mapping[str, Any]) -> bool:
    """True for a direct message to the bot."""
    if event.get("channel_type") == "im":
        return True
    return "channel_type" not in event and str(event.get("channel", "")).startswith("D")


def is_bot_event(event: Mapping[str, Any], bot_user_id: str | None = None) -> bool:
    """True for messages written by any bot, this one included (no reply loops)."""
    if event.get("bot_id") or event.get("subtype") == "bot_message" or event.get("bot_profile"):
        return True
    return bool(bot_user_id) and event.get("user") == bot_user_id


def is_person_message(event: Mapping[str, Any], bot_user_id: str | None = None) -> bool:
    """True when a person wrote this (not a bot, not an edit, join or deletion)."""
    if is_bot_event(event, bot_user_id):
        return False
    return event.get("subtype") in _HUMAN_SUBTYPES and bool(event.get("user"))


def workspace_of(body: Mapping[str, Any]) -> str:
    """The workspace (team) id the event was delivered for."""
    event = body.get("event") or {}
    return str(body.get("team_id") or event.get("team") or "")


def recipient_team(body: Mapping[str, Any]) -> str:
    """The team of the person who wrote the event (their own team in shared channels)."""
    event = body.get("event") or {}
    return str(event.get("user_team") or event.get("team") or body.get("team_id") or "")


def conversation_thread(event: Mapping[str, Any]) -> str:
    """The thread id the memory is keyed on: `thread_ts or ts`; a DM's main timeline is the DM."""
    if event.get("thread_ts"):
        return str(event["thread_ts"])
    if is_dm(event):
        return str(event["channel"])
    return str(event["ts"])


def reply_thread_ts(channel: str, thread: str) -> str | None:
    """The `thread_ts` to answer in (None for a DM's main timeline)."""
    return None if thread == channel else thread


def message_key(event: Mapping[str, Any]) -> str:
    """The delivery-independent id of a message: the same for retries and mention/message twins."""
    return f"{event['channel']}:{event['ts']}"


def event_thread_key(body: Mapping[str, Any]) -> str:
    """The core's thread key for the conversation an event belongs to."""
    event = body["event"]
    return thread_key(
        PLATFORM, workspace_of(body), str(event["channel"]), conversation_thread(event)
    )


def in_thread(event: Mapping[str, Any]) -> bool:
    """True for a reply inside a thread (not the thread's first message)."""
    thread_ts = event.get("thread_ts")
    return bool(thread_ts) and thread_ts != event.get("ts")


def to_incoming(
    body: Mapping[str, Any],
    bot_user_id: str | None,
    prior_context: Sequence[ContextMessage] = (),
) -> IncomingMessage | None:
    """Translate an `app_mention` or `message` event envelope; None when it is not a person's message."""
    event = body.get("event") or {}
    if event.get("type") not in ("app_mention", "message"):
        return None
    if not is_person_message(event, bot_user_id):
        return None
    channel = str(event.get("channel", ""))
    if not channel or not event.get("ts"):
        return None
    return IncomingMessage(
        platform=PLATFORM,
        workspace=workspace_of(body),
        channel=channel,
        thread=conversation_thread(event),
        user=str(event["user"]),
        text=strip_mentions(str(event.get("text") or ""), bot_user_id),
        event_id=message_key(event),
        is_dm=is_dm(event),
        prior_context=tuple(prior_context),
    )


def should_answer_message(
    body: Mapping[str, Any], bot_user_id: str | None, knows_thread: Callable[[str], bool]
) -> bool:
    """Whether a `message` event (not `app_mention`) is for the bot: DMs and threads it has joined.

    A channel message that mentions the bot is left to its `app_mention` twin.
    """
    event = body.get("event") or {}
    if not is_person_message(event, bot_user_id):
        return False
    if is_dm(event):
        return True
    if mentions_user(str(event.get("text") or ""), bot_user_id):
        return False
    return in_thread(event) and knows_thread(event_thread_key(body))


def needs_prior_context(body: Mapping[str, Any], knows_thread: Callable[[str], bool]) -> bool:
    """True when mentioned inside a thread the bot has not seen (read its earlier messages once)."""
    event = body.get("event") or {}
    return in_thread(event) and not knows_thread(event_thread_key(body))


def context_from_replies(
    messages: Sequence[Mapping[str, Any]],
    before_ts: str,
    bot_user_id: str | None,
) -> tuple[ContextMessage, ...]:
    """Earlier thread messages (a `conversations.replies` page) as the core's context."""
    context: list[ContextMessage] = []
    for m in messages:
        ts = str(m.get("ts", ""))
        if not ts or float(ts) >= float(before_ts):
            continue
        if m.get("subtype") not in _HUMAN_SUBTYPES and m.get("subtype") != "bot_message":
            continue
        text = strip_mentions(str(m.get("text") or ""), bot_user_id)
        if not text:
            continue
        bot = is_bot_event(m, bot_user_id)
        who = str(m.get("user") or m.get("username") or m.get("bot_id") or "unknown")
        context.append(ContextMessage(user=who, text=text, is_bot=bot))
    return tuple(context)


def slash_command_text(text: str) -> str:
    """`/archbot todos` -> `!todos`; empty -> `!help`."""
    text = text.strip()
    if not text:
        return "!help"
    return text if text.startswith("!") else f"!{text}"


def slash_to_incoming(payload: Mapping[str, Any]) -> IncomingMessage:
    """Translate a `/archbot` slash command; it has no thread, so it acts on the channel's own thread."""
    channel = str(payload["channel_id"])
    return IncomingMessage(
        platform=PLATFORM,
        workspace=str(payload.get("team_id") or ""),
        channel=channel,
        thread=channel,
        user=str(payload["user_id"]),
        user_name=str(payload.get("user_name") or ""),
        text=slash_command_text(str(payload.get("text") or "")),
        event_id=f"slash:{payload.get('trigger_id') or ''}" if payload.get("trigger_id") else "",
        is_dm=channel.startswith("D"),
    )


def is_error_reply(reply: Reply) -> bool:
    """Replies shown only to the person who typed a slash command (errors, unknown commands)."""
    return reply.kind == "error" or reply.text.startswith("Unknown command")


# ---------------------------------------------------------------------------------------
# Web API client and outbox


def make_client(token: str, api_url: str) -> AsyncWebClient:
    """A Web API client on `api_url` that retries connection errors and 429s (after Retry-After)."""
    return configure_client(AsyncWebClient(token=token), api_url)


def configure_client(client: AsyncWebClient, api_url: str) -> AsyncWebClient:
    """Point a client at `api_url` and add slack-sdk's 429 handler (it honours Retry-After)."""
    client.base_url = api_url if api_url.endswith("/") else f"{api_url}/"
    if not any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers):
        client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    return client


class SlackOutbox:
    """Posts Markdown to Slack as `markdown_text`, split below Slack's limit."""

    platform = PLATFORM

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.workspace = ""  # the team id, known once auth.test has answered

    async def post(self, channel: str, thread: str | None, text: str) -> str:
        """Post `text` in order; return the ts of the first message (a new thread when `thread` is None)."""
        first = ""
        thread_ts = reply_thread_ts(channel, thread) if thread else None
        for part in render_parts(text):
            response = await self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                markdown_text=part,
                unfurl_links=False,
                unfurl_media=False,
            )
            ts = str(response.get("ts") or "")
            if not first:
                first = ts
                # The parts of a new top-level post continue in the thread it opens.
                if thread is None:
                    thread_ts = ts
        return first


def fit_streamed(shown: str, text: str, limit: int = MARKDOWN_LIMIT) -> tuple[str, str]:
    """Split `text` into what still fits a streamed message already showing `shown`, and the rest.

    The cut falls on a paragraph, line or word break, leaving room to close a code fence.
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
    if cut <= 0:
        cut = room
    return text[:cut], text[cut:]


def continue_after(shown: str, rest: str) -> str:
    """`rest` as the start of a new message after `shown`, reopening a code fence `shown` left open."""
    opener, _ = open_fence(shown)
    if not opener:
        return rest.lstrip("\n")
    return f"{opener}\n{rest[1:] if rest.startswith(chr(10)) else rest}"


class StreamedReply:
    """One answer streamed into a Slack thread while the model writes it.

    `feed` is the core's text sink: it only buffers, and a background task sends
    batches (chat.startStream, then chat.appendStream), so a slow Slack call never
    stalls the model's stream. Whatever streaming could not carry (the workspace
    refused it, a call failed midway, or the message reached Slack's size limit)
    is posted in the same thread at `finish`, so the answer arrives whole, once.
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
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.msg = msg
        self.thread_ts = thread_ts
        self.recipient_team_id = recipient_team_id
        self._on_visible = on_visible
        self._on_unsupported = on_unsupported
        self._stream = ReplyStream()
        self._pending = ""  # neutralised text not yet handed to Slack
        self._unsent = ""  # text for normal posts after the streamed message ended
        self.ts: str | None = None  # the streamed message, once chat.startStream answered
        self.shown = ""  # what the streamed message shows
        self.state = "idle"  # idle -> streaming -> stopped
        self._closing = False
        self._wake = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None

    async def feed(self, delta: str) -> None:
        """The core's text sink: buffer the safe part and let the pump send it."""
        chunk = self._stream.feed(delta)
        if not chunk:
            return
        self._pending += neutralize_broadcasts(chunk)
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump())
        if len(self._pending) >= STREAM_BATCH_CHARS:
            self._wake.set()

    async def _pump(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), STREAM_FLUSH_SECONDS)
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                return
            if self._pending:
                text, self._pending = self._pending, ""
                await self._send(text, last=False)

    async def _stop_pump(self) -> None:
        self._closing = True
        self._wake.set()
        task, self._pump_task = self._pump_task, None
        if task is not None:
            await task  # lets a Slack call under way finish, so order holds

    async def finish(self, reply: Reply) -> None:
        """Send what is left of `reply` (streamed, or posted); raises when posting fails."""
        await self._stop_pump()
        rest = neutralize_broadcasts(rest_of_reply(self._stream.sent, reply.text))
        text, self._pending = self._pending + rest, ""
        if self.state == "idle" and not self._stream.sent:
            # Too short to have released anything (a short answer, a command): post it whole.
            self.state = "stopped"
            await self.outbox.post(self.msg.channel, self.msg.thread, reply.text)
            return
        await self._send(text, last=True)
        if self._unsent.strip():
            await self.outbox.post(self.msg.channel, self.msg.thread, self._unsent)

    async def close(self) -> None:
        """End the streamed message if the turn ended without `finish` (it must not hang open)."""
        await self._stop_pump()
        if self.state == "streaming":
            await self._quiet_stop()

    async def _send(self, text: str, *, last: bool) -> None:
        """Stream `text`, ending the message when `last` or when it would outgrow Slack's limit."""
        if self.state == "stopped":
            self._unsent += text
            return
        head, tail = fit_streamed(self.shown, text)
        stopping = last or bool(tail)
        try:
            if self.state == "idle":
                await self._start(head)
                head = ""
            if stopping:
                closing = _closing_fence(self.shown + head)
                await self.client.chat_stopStream(
                    channel=self.msg.channel,
                    ts=str(self.ts),
                    markdown_text=(head + closing) or None,
                )
                shown_before, self.shown = self.shown + head, self.shown + head + closing
                self.state = "stopped"
                if tail:
                    self._unsent += continue_after(shown_before, tail)
            elif head:
                await self.client.chat_appendStream(
                    channel=self.msg.channel, ts=str(self.ts), markdown_text=head
                )
                self.shown += head
        except Exception as exc:
            # Whatever went wrong, the text Slack did not show is posted at `finish`.
            await self._broken(exc, head + tail)

    async def _start(self, head: str) -> None:
        response = await self.client.chat_startStream(
            channel=self.msg.channel,
            thread_ts=self.thread_ts,
            markdown_text=head,
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
                    _describe(exc),
                    exc_info=not isinstance(exc, CALL_ERRORS),
                )
            self.state = "stopped"
            self._unsent += not_shown
            return
        log.warning(
            "slack: streaming to %s broke off (%s); posting the rest",
            self.msg.thread_key,
            _describe(exc),
            exc_info=not isinstance(exc, CALL_ERRORS),
        )
        shown = self.shown
        if self.state == "streaming":
            await self._quiet_stop()
        self.state = "stopped"
        self._unsent += continue_after(shown, not_shown)

    async def _quiet_stop(self) -> None:
        """Close the streamed message (and any code fence it left open); errors are only logged."""
        self.state = "stopped"
        try:
            await self.client.chat_stopStream(
                channel=self.msg.channel,
                ts=str(self.ts),
                markdown_text=_closing_fence(self.shown) or None,
            )
        except CALL_ERRORS as exc:
            log.warning(
                "slack: could not end the streamed message in %s: %s",
                self.msg.thread_key,
                _describe(exc),
            )


def _closing_fence(shown: str) -> str:
    """What closes a code fence left open at the end of `shown` ("" when none is open)."""
    _, closer = open_fence(shown)
    return f"\n{closer}" if closer else ""


# ---------------------------------------------------------------------------------------
# the adapter


_SECRET_HINTS = {
    "SLACK_BOT_TOKEN": "export the app's Bot User OAuth Token (xoxb-...)",
    "SLACK_SIGNING_SECRET": '[slack] mode = "http" needs the app\'s signing secret',
    "SLACK_APP_TOKEN": "Socket Mode needs an app-level token (xapp-...) with connections:write, "
    'or set [slack] mode = "http"',
}


def _secret(value: Any, name: str) -> str:
    raw = value.get_secret_value() if value is not None else ""
    if not raw:
        raise ConfigError(f"{name} is not set: {_SECRET_HINTS[name]}")
    return str(raw)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return f"Slack API error {exc.response.get('error', 'unknown')} (HTTP {exc.response.status_code})"
    return f"{type(exc).__name__}: {exc}"


class _ThinkingIndicator:
    """assistant.threads.setStatus where the workspace allows it, else a reaction; removed after."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        # Learned per kind of conversation (DM or channel): the API answers the same each time.
        self.status_works: dict[bool, bool] = {}

    async def start(self, channel: str, thread_ts: str | None, message_ts: str, dm: bool) -> str:
        """Show the indicator; return how ("status", "reaction" or "")."""
        if thread_ts and self.status_works.get(dm, True):
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=channel, thread_ts=thread_ts, status=THINKING_STATUS
                )
                self.status_works[dm] = True
                return "status"
            except SlackApiError as exc:
                log.debug("assistant status unavailable (%s); using a reaction", _describe(exc))
                self.status_works[dm] = False
            except CALL_ERRORS as exc:
                log.warning("thinking status failed: %s", _describe(exc))
                return ""
        try:
            await self.client.reactions_add(
                channel=channel, timestamp=message_ts, name=THINKING_REACTION
            )
            return "reaction"
        except CALL_ERRORS as exc:
            log.warning("thinking reaction failed in %s: %s", channel, _describe(exc))
            return ""

    async def stop(
        self, how: str, channel: str, thread_ts: str | None, message_ts: str, posted: bool
    ) -> None:
        """Remove the indicator (a posted reply already clears the assistant status)."""
        try:
            if how == "reaction":
                await self.client.reactions_remove(
                    channel=channel, timestamp=message_ts, name=THINKING_REACTION
                )
            elif how == "status" and not posted and thread_ts:
                await self.client.assistant_threads_setStatus(
                    channel_id=channel, thread_ts=thread_ts, status=""
                )
        except CALL_ERRORS as exc:
            log.warning("removing the thinking indicator in %s failed: %s", channel, _describe(exc))


class SlackAdapter:
    """Delivers Slack mentions, thread replies, DMs and `/archbot` to the core; posts its replies."""

    platform = PLATFORM

    def __init__(self, core: Core, *, host: str = "0.0.0.0") -> None:
        self.core = core
        self.settings = core.settings.slack
        secrets = core.secrets
        token = _secret(secrets.slack_bot_token, "SLACK_BOT_TOKEN")
        self.mode = self.settings.mode
        self.host = host
        self.port = self.settings.port
        self._app_token = ""
        signing_secret = ""
        if self.mode == "http":
            signing_secret = _secret(secrets.slack_signing_secret, "SLACK_SIGNING_SECRET")
        else:
            self._app_token = _secret(secrets.slack_app_token, "SLACK_APP_TOKEN")
        # Bolt builds its client from the token (given a client, it warns about SLACK_BOT_TOKEN in
        # the environment); bolt copies base_url and retry handlers into each request's client.
        self.app = AsyncApp(
            token=token,
            signing_secret=signing_secret,
            request_verification_enabled=self.mode == "http",
            process_before_response=False,
            logger=logging.getLogger("slack_bolt.archbot"),
        )
        self.client = configure_client(self.app.client, self.settings.api_url)
        self.outbox = SlackOutbox(self.client)
        self.thinking = _ThinkingIndicator(self.client)
        self.app.event("app_mention")(self._on_app_mention)
        self.app.event("message")(self._on_message)
        self.app.command(SLASH_COMMAND)(self._on_slash_command)
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self.team_id = ""
        self._runner: web.AppRunner | None = None
        self._socket: Any = None
        self._stopped = False
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Messages taken in by this process: a redelivery skips the thinking indicator.
        # The core's SQLite record is what makes delivery exactly-once.
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Workspaces where chat.startStream was refused -> when to try streaming again.
        self._no_streaming: dict[str, float] = {}

    # lifecycle -------------------------------------------------------------------------

    async def check(self) -> str:
        """auth.test with the bot token; a one-line status."""
        return await _auth_status(self.client, self.mode)

    async def start(self) -> None:
        """Learn who the bot is, then listen (HTTP server or Socket Mode connection)."""
        try:
            auth = await self.client.auth_test()
        except CALL_ERRORS as exc:
            raise ArchbotError(f"slack: auth.test failed: {_describe(exc)}") from None
        self.bot_user_id = str(auth.get("user_id") or "") or None
        self.bot_id = str(auth.get("bot_id") or "") or None
        self.team_id = str(auth.get("team_id") or "")
        self.outbox.workspace = self.team_id
        self._prime_authorization(auth)
        if self.mode == "http":
            await self._start_http()
        else:
            await self._start_socket()

    def _prime_authorization(self, auth: AsyncSlackResponse) -> None:
        """Hand our auth.test answer to bolt's authorization middleware.

        Otherwise bolt calls auth.test inside the first request's acknowledgement, once per
        concurrent request until one returns (a burst at start-up).
        """
        for middleware in getattr(self.app, "_async_middleware_list", []):
            if (
                isinstance(middleware, AsyncSingleTeamAuthorization)
                and middleware.auth_test_result is None
            ):
                middleware.auth_test_result = auth

    async def _start_http(self) -> None:
        web_app = web.Application()
        web_app.router.add_post(EVENTS_PATH, self._http_events)
        self._runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ArchbotError(
                f"slack: cannot listen on port {self.port}: {exc.strerror}"
            ) from None
        server = site._server
        if server is not None and self.port == 0:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        log.info(
            "slack: listening for Events API requests on http://%s:%d%s",
            self.host,
            self.port,
            EVENTS_PATH,
        )

    async def _http_events(self, request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        bolt_response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def _start_socket(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        self._socket = AsyncSocketModeHandler(self.app, self._app_token, web_client=self.client)
        try:
            await self._socket.connect_async()
        except CALL_ERRORS as exc:
            await self._socket.close_async()
            self._socket = None
            raise ArchbotError(f"slack: Socket Mode connection failed: {_describe(exc)}") from None
        log.info("slack: connected with Socket Mode as %s", self.bot_user_id)

    async def stop(self) -> None:
        """Stop taking events, then let in-flight replies finish posting (up to 10 s)."""
        if self._stopped:
            return
        self._stopped = True
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        try:
            await asyncio.wait_for(self._idle.wait(), STOP_SECONDS)
        except TimeoutError:
            log.warning("slack: %d replies still in flight at shutdown", self._active)

    # listeners (bolt injects arguments by name) -------------------------------------------------

    async def _on_app_mention(self, body: dict[str, Any]) -> None:
        event = body.get("event") or {}
        if not is_person_message(event, self.bot_user_id) or message_key(event) in self._seen:
            return  # a bot, or a redelivery of a message already taken in (no second thread read)
        prior: tuple[ContextMessage, ...] = ()
        if needs_prior_context(body, self.core.consultant.knows_thread):
            prior = await self._read_thread(
                str(event["channel"]), str(event["thread_ts"]), str(event["ts"])
            )
        msg = to_incoming(body, self.bot_user_id, prior)
        if msg is not None:
            await self._answer(msg, str(event["ts"]), body.get("event_id"), recipient_team(body))

    async def _on_message(self, body: dict[str, Any]) -> None:
        if not should_answer_message(body, self.bot_user_id, self.core.consultant.knows_thread):
            return
        msg = to_incoming(body, self.bot_user_id)
        if msg is not None:
            await self._answer(
                msg, str(body["event"]["ts"]), body.get("event_id"), recipient_team(body)
            )

    async def _on_slash_command(
        self,
        ack: Callable[..., Awaitable[Any]],
        body: dict[str, Any],
        respond: Callable[..., Awaitable[Any]],
    ) -> None:
        await ack()
        msg = slash_to_incoming(body)
        try:
            reply = await self.core.consultant.handle(msg)
        except Exception:
            log.exception("slack: %s failed in %s", SLASH_COMMAND, msg.thread_key)
            reply = Reply("Sorry, that command failed; the error is in the bot's log.", "", "error")
        if reply is None:
            reply = Reply(
                "You can't use archbot here (see the bot's [access] settings).", "", "error"
            )
        response_type = "ephemeral" if is_error_reply(reply) else "in_channel"
        try:
            for part in render_parts(reply.text):
                await respond(
                    text=_fallback(part),
                    blocks=[{"type": "markdown", "text": part}],
                    response_type=response_type,
                )
        except CALL_ERRORS as exc:
            log.error(
                "slack: answering %s in %s failed: %s",
                SLASH_COMMAND,
                msg.channel_key,
                _describe(exc),
            )

    # the work ------------------------------------------------------------------------------------

    async def _read_thread(
        self, channel: str, thread_ts: str, before_ts: str
    ) -> tuple[ContextMessage, ...]:
        """Read a thread's earlier messages once (`conversations.replies`); empty when not allowed."""
        try:
            response = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=CONTEXT_LIMIT
            )
        except CALL_ERRORS as exc:
            log.warning(
                "slack: could not read earlier messages of %s/%s: %s",
                channel,
                thread_ts,
                _describe(exc),
            )
            return ()
        messages = response.get("messages") or []
        return context_from_replies(messages, before_ts, self.bot_user_id)

    async def _answer(
        self, msg: IncomingMessage, message_ts: str, event_id: object, team: str = ""
    ) -> None:
        """Run one turn with a thinking indicator; stream the reply where possible, else post it."""
        if msg.event_id in self._seen:
            log.info(
                "slack: %s (event %s) already taken in; ignoring the redelivery",
                msg.event_id,
                event_id,
            )
            return
        self._remember(msg.event_id)
        self._active += 1
        self._idle.clear()
        thread_ts = reply_thread_ts(msg.channel, msg.thread)
        how, indicator_on, posted = "", False, False

        async def visible() -> None:
            # The first streamed chunk replaces the indicator, as a posted reply does.
            nonlocal indicator_on
            if indicator_on:
                indicator_on = False
                await self.thinking.stop(how, msg.channel, thread_ts, message_ts, posted=True)

        streamed: StreamedReply | None = None
        if thread_ts is not None and self._can_stream(msg.workspace):
            streamed = StreamedReply(
                self.client,
                self.outbox,
                msg,
                thread_ts,
                team or msg.workspace,
                on_visible=visible,
                on_unsupported=self._streaming_unsupported,
            )
        try:
            how = await self.thinking.start(msg.channel, thread_ts, message_ts, msg.is_dm)
            indicator_on = True
            reply = await self.core.consultant.handle(
                msg, on_text=streamed.feed if streamed is not None else None
            )
            if reply is not None:
                posted = await self._deliver(msg, reply, streamed)
        except Exception:
            # Not recorded as taken in: a retry of this event gets another chance.
            self._seen.pop(msg.event_id, None)
            log.exception("slack: handling %s in %s failed", event_id, msg.thread_key)
        finally:
            if streamed is not None:
                await streamed.close()
            if indicator_on:
                await self.thinking.stop(how, msg.channel, thread_ts, message_ts, posted)
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def _deliver(
        self, msg: IncomingMessage, reply: Reply, streamed: StreamedReply | None = None
    ) -> bool:
        try:
            if streamed is not None:
                await streamed.finish(reply)
            else:
                await self.outbox.post(msg.channel, msg.thread, reply.text)
        except Exception as exc:
            # Not marked delivered, so the stored answer is posted whole on recovery.
            log.error(
                "slack: posting the reply to %s failed (%s); the answer stays stored",
                reply.thread_key,
                _describe(exc),
            )
            return False
        self.core.consultant.mark_delivered(reply)
        return True

    def _can_stream(self, workspace: str) -> bool:
        """False while a workspace that refused chat.startStream waits for its recheck."""
        until = self._no_streaming.get(workspace)
        if until is None:
            return True
        if time.monotonic() >= until:
            del self._no_streaming[workspace]
            return True
        return False

    def _streaming_unsupported(self, workspace: str) -> None:
        self._no_streaming[workspace] = time.monotonic() + STREAMING_RECHECK_SECONDS

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        while len(self._seen) > _SEEN_CAPACITY:
            self._seen.popitem(last=False)


def _fallback(part: str, size: int = 300) -> str:
    """Plain notification text for a Markdown part."""
    flat = " ".join(part.split())
    return flat if len(flat) <= size else f"{flat[: size - 1]}…"


async def _auth_status(client: AsyncWebClient, mode: str) -> str:
    try:
        auth = await client.auth_test()
    except CALL_ERRORS as exc:
        raise ArchbotError(f"auth.test failed: {_describe(exc)}") from None
    return f"auth.test ok: @{auth.get('user')} in {auth.get('team')} ({auth.get('team_id')}), {mode} mode"


def create_adapter(core: Core) -> SlackAdapter:
    """Build the Slack adapter (`archbot run` calls this when [slack] enabled = true)."""
    return SlackAdapter(core)


async def doctor_check(settings: Settings, secrets: Secrets) -> str | None:
    """`archbot doctor`: check the tokens for the configured mode and call auth.test."""
    if not settings.slack.enabled:
        return None
    token = _secret(secrets.slack_bot_token, "SLACK_BOT_TOKEN")
    if settings.slack.mode == "http":
        _secret(secrets.slack_signing_secret, "SLACK_SIGNING_SECRET")
    else:
        _secret(secrets.slack_app_token, "SLACK_APP_TOKEN")
    return await _auth_status(make_client(token, settings.slack.api_url), settings.slack.mode)
