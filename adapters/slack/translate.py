"""Slack Events API payloads and slash commands -> the core's `IncomingMessage` (pure functions).

The key of a message is its channel and `ts`, not the envelope's `event_id`,
because Slack sends a channel mention twice (as `app_mention` and as `message`)
with different event ids but the same message. Tested on recorded payloads in
tests/data/slack/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.events import (
    Attachment,
    ContextMessage,
    ForwardedMessage,
    IncomingMessage,
    Reply,
    thread_key,
)

PLATFORM = "slack"
# Slack's own system user: removal notices and reminders in the bot's DM, never a person.
SLACKBOT = "USLACKBOT"
# Message subtypes that are a person writing; edits, joins and deletions are not.
_HUMAN_SUBTYPES = frozenset({None, "", "file_share", "thread_broadcast", "me_message"})
# Caps on what one message may make the bot read or look up (payload fields are untrusted).
MAX_FORWARDED = 10
MAX_FILES = 20
MAX_NAMED = 20
NAME_LIMIT = 80
FILE_NAME_LIMIT = 200

# <@U123>, <@W123> and <@U123|label>: user mentions as the Events API encodes them.
_USER_MENTION = re.compile(r"<@(?P<id>[UW][A-Z0-9]+)(?:\|[^>]*)?>")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_CHANNEL_ID = re.compile(r"[CDG][A-Z0-9]{2,30}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
MAX_STOPPED_STREAMS = 20


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
    """True for messages written by any bot or app (this one and Slackbot included: no loops)."""
    if event.get("bot_id") or event.get("subtype") == "bot_message" or event.get("bot_profile"):
        return True
    if event.get("user") == SLACKBOT or event.get("display_as_bot"):
        return True
    # An app posting through the API carries app_id; what a person types carries client_msg_id.
    if event.get("app_id") and not event.get("client_msg_id"):
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
    names: Mapping[str, str] | None = None,
) -> IncomingMessage | None:
    """Translate an `app_mention` or `message` event envelope; None when it is not a person's message.

    `names` maps user ids to display names (see `people_to_name`); people without
    one keep their id.
    """
    event = body.get("event") or {}
    if event.get("type") not in ("app_mention", "message"):
        return None
    if not is_person_message(event, bot_user_id):
        return None
    channel = str(event.get("channel", ""))
    if not channel or not event.get("ts"):
        return None
    names = names or {}
    raw = str(event.get("text") or "")
    user = str(event["user"])
    return IncomingMessage(
        platform=PLATFORM,
        workspace=workspace_of(body),
        channel=channel,
        thread=conversation_thread(event),
        user=user,
        user_name=names.get(user, ""),
        text=name_mentions(strip_mentions(raw, bot_user_id), names),
        event_id=message_key(event),
        is_dm=is_dm(event),
        prior_context=tuple(prior_context),
        forwarded=forwarded_of(event, names),
        attachments=attachments_of(event),
        mentioned=event.get("type") == "app_mention" or mentions_user(raw, bot_user_id),
    )


def forwarded_of(
    event: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> tuple[ForwardedMessage, ...]:
    """The shared or forwarded messages in `attachments[]`: their words, author and source."""
    names = names or {}
    found: list[ForwardedMessage] = []
    for att in _attachments(event):
        if not (att.get("is_share") or att.get("is_msg_unfurl") or att.get("message_blocks")):
            continue  # link previews and app attachments are not someone's words
        text = "\n".join(
            t
            for t in (
                rich_text_plain(_message_blocks(mb)) for mb in att.get("message_blocks") or []
            )
            if t
        ) or str(att.get("text") or "")
        if not text.strip():
            continue  # a share of nothing readable (an image, a deleted message)
        author_id = str(att.get("author_id") or "")
        author = names.get(author_id) or clean_name(
            str(att.get("author_name") or att.get("author_subname") or author_id)
        )
        channel_name = att.get("channel_name")
        source = f"#{channel_name}" if channel_name else str(att.get("from_url") or "")
        found.append(ForwardedMessage(name_mentions(text, names), author, clean_name(source, 300)))
        if len(found) >= MAX_FORWARDED:
            break
    return tuple(found)


def attachments_of(event: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """The files on a message (name, type, size), named to the model; the bot never downloads them."""
    files: list[Attachment] = []
    for f in event.get("files") or []:
        if not isinstance(f, Mapping) or f.get("mode") == "tombstone":  # a deleted file
            continue
        name = clean_name(str(f.get("name") or f.get("title") or f.get("id") or "file"))
        size = f.get("size")
        files.append(
            Attachment(
                name[:FILE_NAME_LIMIT],
                clean_name(str(f.get("mimetype") or "")),
                size if isinstance(size, int) and not isinstance(size, bool) else None,
            )
        )
        if len(files) >= MAX_FILES:
            break
    return tuple(files)


def _attachments(event: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in event.get("attachments") or [] if isinstance(a, Mapping)]


def _message_blocks(entry: Any) -> list[Any]:
    message = entry.get("message") if isinstance(entry, Mapping) else None
    blocks = message.get("blocks") if isinstance(message, Mapping) else None
    return blocks if isinstance(blocks, list) else []


def rich_text_plain(blocks: Sequence[Any]) -> str:
    """The words of Slack `rich_text` blocks as plain text (users as `<@U…>`, links as URLs)."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Mapping) and block.get("type") == "rich_text":
            for element in block.get("elements") or []:
                lines.extend(_rich_lines(element))
    return "\n".join(lines).strip()


def _rich_lines(element: Any) -> list[str]:
    if not isinstance(element, Mapping):
        return []
    kind = element.get("type")
    children = element.get("elements") or []
    if kind == "rich_text_list":
        ordered = element.get("style") == "ordered"
        return [
            f"{f'{n}.' if ordered else '-'} {line}"
            for n, child in enumerate(children, 1)
            for line in _rich_lines(child)[:1]
        ]
    # Slack ends a section with "\n" before a list or quote; the lines are joined anyway.
    text = "".join(_rich_leaf(leaf) for leaf in children).strip("\n")
    if kind == "rich_text_quote":
        return [f"> {line}" for line in text.split("\n")]
    if kind == "rich_text_preformatted":
        return ["```", text, "```"]
    return text.split("\n") if text else []


def _rich_leaf(leaf: Any) -> str:
    if not isinstance(leaf, Mapping):
        return ""
    kind = leaf.get("type")
    if kind == "text":
        return str(leaf.get("text") or "")
    if kind == "link":
        return str(leaf.get("text") or leaf.get("url") or "")
    if kind == "user":
        return f"<@{leaf.get('user_id', '')}>"
    if kind == "channel":
        return f"<#{leaf.get('channel_id', '')}>"
    if kind == "emoji":
        return f":{leaf.get('name', '')}:"
    if kind == "broadcast":
        return f"@{leaf.get('range', '')}"
    if kind == "usergroup":
        return f"<!subteam^{leaf.get('usergroup_id', '')}>"
    if kind == "date":
        return str(leaf.get("fallback") or "")
    return ""


def clean_name(raw: str, limit: int = NAME_LIMIT) -> str:
    """A name from a payload or users.info as one short line (it is untrusted text)."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in raw).split())
    return flat[:limit]


def name_mentions(text: str, names: Mapping[str, str]) -> str:
    """`<@U…>` and `<@U…|label>` of people with a known name (or label) -> `@Name`."""

    def named(match: re.Match[str]) -> str:
        name = names.get(match.group("id"))
        if not name and "|" in match.group(0):
            name = clean_name(match.group(0)[:-1].split("|", 1)[1])
        return f"@{name}" if name else match.group(0)

    return _USER_MENTION.sub(named, text)


def people_to_name(
    body: Mapping[str, Any],
    bot_user_id: str | None,
    context: Sequence[Mapping[str, Any]] = (),
    limit: int = MAX_NAMED,
) -> list[str]:
    """The user ids worth a display name: the author, people mentioned or forwarded, context authors.

    At most `limit`, the author first, so one message cannot fan out into many look-ups.
    """
    event = body.get("event") or {}
    ids: list[str] = [str(event.get("user") or "")]
    texts = [str(event.get("text") or "")]
    for att in _attachments(event):
        ids.append(str(att.get("author_id") or ""))
        texts.append(str(att.get("text") or ""))
        texts.extend(rich_text_plain(_message_blocks(mb)) for mb in att.get("message_blocks") or [])
    for m in context:
        if not is_bot_event(m, bot_user_id):
            ids.append(str(m.get("user") or ""))
        texts.append(str(m.get("text") or ""))
    for text in texts:
        ids.extend(m.group("id") for m in _USER_MENTION.finditer(text))
    wanted: list[str] = []
    for uid in ids:
        if _USER_ID.fullmatch(uid) and uid not in (bot_user_id, SLACKBOT) and uid not in wanted:
            wanted.append(uid)
    return wanted[:limit]


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
    names: Mapping[str, str] | None = None,
) -> tuple[ContextMessage, ...]:
    """Earlier thread messages (a `conversations.replies` page) as the core's context, people named."""
    names = names or {}
    context: list[ContextMessage] = []
    for m in messages:
        ts = str(m.get("ts", ""))
        if not ts or float(ts) >= float(before_ts):
            continue
        if m.get("subtype") not in _HUMAN_SUBTYPES and m.get("subtype") != "bot_message":
            continue
        text = name_mentions(strip_mentions(str(m.get("text") or ""), bot_user_id), names)
        if not text:
            continue
        bot = is_bot_event(m, bot_user_id)
        who = str(m.get("user") or m.get("username") or m.get("bot_id") or "unknown")
        who = (None if bot else names.get(who)) or who
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


@dataclass(frozen=True, slots=True)
class SessionStop:
    """An `agent_session_stopped` event: someone pressed Slack's stop button in a thread."""

    thread_key: str
    workspace: str
    channel: str
    thread_ts: str
    user: str
    streams: tuple[str, ...]  # the bot's streaming messages Slack already stopped


def session_stop(body: Mapping[str, Any]) -> SessionStop | None:
    """Read an `agent_session_stopped` envelope; None when a field is missing or malformed."""
    event = body.get("event")
    if not isinstance(event, Mapping) or event.get("type") != "agent_session_stopped":
        return None
    channel, thread_ts, user = event.get("channel"), event.get("thread_ts"), event.get("user")
    if not (isinstance(channel, str) and _CHANNEL_ID.fullmatch(channel)):
        return None
    if not (isinstance(thread_ts, str) and _TS.fullmatch(thread_ts)):
        return None
    user = user if isinstance(user, str) and _USER_ID.fullmatch(user) else ""
    raw = event.get("streaming_message_ts")
    streams = tuple(
        ts
        for ts in (raw if isinstance(raw, list) else [])[:MAX_STOPPED_STREAMS]
        if isinstance(ts, str) and _TS.fullmatch(ts)
    )
    workspace = workspace_of(body)
    return SessionStop(
        thread_key(PLATFORM, workspace, channel, thread_ts),
        workspace,
        channel,
        thread_ts,
        user,
        streams,
    )
