"""Slack Events API payloads and slash commands -> the core's `IncomingMessage` (pure functions).

The key of a message is its channel and `ts`, not the envelope's `event_id`,
because Slack sends a channel mention twice (as `app_mention` and as `message`)
with different event ids but the same message. Tested on recorded payloads in
tests/data/slack/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bot.events import ContextMessage, IncomingMessage, Reply, thread_key

PLATFORM = "slack"
# Message subtypes that are a person writing; edits, joins and deletions are not.
_HUMAN_SUBTYPES = frozenset({None, "", "file_share", "thread_broadcast", "me_message"})

# <@U123>, <@W123> and <@U123|label>: user mentions as the Events API encodes them.
_USER_MENTION = re.compile(r"<@(?P<id>[UW][A-Z0-9]+)(?:\|[^>]*)?>")


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
