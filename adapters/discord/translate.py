"""Pure translation between Discord payloads and the core's IncomingMessage."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import discord

from bot.events import Attachment, ContextMessage, ForwardedMessage, IncomingMessage

PLATFORM = "discord"
THREAD_NAME_LIMIT = 100
# Message types people write: DEFAULT and REPLY. Every other type is a notice Discord
# makes (pins, "added to thread", thread created, boosts, ...), never a question.
PERSON_MESSAGE_TYPES = frozenset({0, 19})
FORWARD = 1  # message_reference.type of a forward (0 is a reply)
FORWARD_TEXT_LIMIT = 8000  # a snapshot holds at most 4000 chars of content plus embeds
ATTACHMENT_LIMIT = 10  # Discord allows 10 files per message
FILE_NAME_LIMIT = 200
SNOWFLAKE = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class Where:
    """Where a message was posted: a DM, a guild channel, or a thread (with its parent)."""

    kind: Literal["dm", "channel", "thread"]
    channel_id: str
    parent_id: str | None = None


def mention_pattern(bot_id: str, role_id: str | None = None) -> re.Pattern[str]:
    """Matches `<@id>`, the legacy nickname form `<@!id>`, and `<@&role>` of the bot's own role.

    Discord's autocomplete sometimes inserts the bot's managed role instead of the bot user.
    """
    forms = [rf"<@!?{re.escape(bot_id)}>"]
    if role_id:
        forms.append(rf"<@&{re.escape(role_id)}>")
    return re.compile("|".join(forms))


def strip_bot_mention(text: str, bot_id: str, role_id: str | None = None) -> str:
    """Remove the bot's mentions (and the blanks right after them); the rest is kept verbatim."""
    return re.sub(rf"(?:{mention_pattern(bot_id, role_id).pattern})[ \t]*", "", text).strip()


def mentions_bot(payload: Mapping[str, Any], bot_id: str, role_id: str | None = None) -> bool:
    """True when the message mentions the bot or its own role (never for @everyone)."""
    if any(str(m.get("id")) == bot_id for m in payload.get("mentions") or []):
        return True
    if role_id and role_id in {str(r) for r in payload.get("mention_roles") or []}:
        return True
    return bool(mention_pattern(bot_id, role_id).search(payload.get("content") or ""))


def is_from_bot(payload: Mapping[str, Any]) -> bool:
    """Messages by bots, webhooks and Discord's system user are never answered."""
    author = payload.get("author") or {}
    return bool(author.get("bot") or author.get("system") or payload.get("webhook_id"))


def is_system_message(payload: Mapping[str, Any]) -> bool:
    """True for Discord's own notices: every message type but default (0) and reply (19)."""
    return payload.get("type", 0) not in PERSON_MESSAGE_TYPES


def _one_line(text: str, limit: int) -> str:
    """Untrusted short text (a file name) on one line, capped: it cannot fake a new line."""
    flat = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def attachments_of(message: Mapping[str, Any]) -> tuple[Attachment, ...]:
    """The files on a message (or a forward's snapshot): name, type and size, never the bytes."""
    out: list[Attachment] = []
    for item in (message.get("attachments") or [])[:ATTACHMENT_LIMIT]:
        if not isinstance(item, Mapping):
            continue
        name = _one_line(str(item.get("filename") or item.get("title") or "file"), FILE_NAME_LIMIT)
        mimetype = _one_line(str(item.get("content_type") or ""), 100)
        size = item.get("size")
        out.append(
            Attachment(name, mimetype, size if isinstance(size, int) and size >= 0 else None)
        )
    return tuple(out)


def _snapshot_text(message: Mapping[str, Any]) -> str:
    """A forwarded message's words: its content, then the titles and text of its embeds."""
    parts = [str(message.get("content") or "").strip()]
    for embed in message.get("embeds") or []:
        if isinstance(embed, Mapping):
            parts.extend(str(embed.get(k) or "").strip() for k in ("title", "description"))
    text = "\n\n".join(p for p in parts if p)
    return text if len(text) <= FORWARD_TEXT_LIMIT else text[:FORWARD_TEXT_LIMIT] + " [...cut]"


def forward_source(payload: Mapping[str, Any]) -> str:
    """A link to the message a forward was taken from, built only from validated ids."""
    ref = payload.get("message_reference") or {}
    if ref.get("type") != FORWARD:
        return ""
    guild = str(ref.get("guild_id") or "@me")
    channel, message = str(ref.get("channel_id") or ""), str(ref.get("message_id") or "")
    if not all(SNOWFLAKE.fullmatch(x) for x in (channel, message)):
        return ""
    if guild != "@me" and not SNOWFLAKE.fullmatch(guild):
        return ""
    return f"https://discord.com/channels/{guild}/{channel}/{message}"


def forwarded_of(
    payload: Mapping[str, Any],
) -> tuple[tuple[ForwardedMessage, ...], tuple[Attachment, ...]]:
    """The words and files a forward carries in `message_snapshots` (its own content is empty).

    Snapshots carry no author (Discord leaves it out), so only the source link is known.
    A snapshot with no words adds no ForwardedMessage, so an empty forward has nothing to read.
    """
    source = forward_source(payload)
    forwarded: list[ForwardedMessage] = []
    files: list[Attachment] = []
    for snapshot in payload.get("message_snapshots") or []:
        message = snapshot.get("message") if isinstance(snapshot, Mapping) else None
        if not isinstance(message, Mapping):
            continue
        text = _snapshot_text(message)
        if text:
            forwarded.append(ForwardedMessage(text=text, source=source))
        files.extend(attachments_of(message))
    return tuple(forwarded), tuple(files[:ATTACHMENT_LIMIT])


def display_name(payload: Mapping[str, Any]) -> str:
    """The name people see: server nickname, else global display name, else the username."""
    author = payload.get("author") or {}
    nick = (payload.get("member") or {}).get("nick")
    return str(
        nick or author.get("global_name") or author.get("username") or author.get("id") or ""
    )


def incoming_from_payload(
    payload: Mapping[str, Any], *, bot_id: str, where: Where, role_id: str | None = None
) -> IncomingMessage:
    """Translate a MESSAGE_CREATE payload into the core's event.

    Memory key: a thread's own id; a DM's channel id; for a mention in a
    channel, the message id (the thread opened on it gets the same id).
    The channel of a thread message is its parent, so bindings and access
    rules apply per Discord channel.
    """
    author = payload.get("author") or {}
    guild_id = payload.get("guild_id")
    message_id = str(payload["id"])
    forwarded, forwarded_files = forwarded_of(payload)
    if where.kind == "dm":
        channel, thread = where.channel_id, where.channel_id
    elif where.kind == "thread":
        channel, thread = where.parent_id or where.channel_id, where.channel_id
    else:
        channel, thread = where.channel_id, message_id
    return IncomingMessage(
        platform=PLATFORM,
        workspace=str(guild_id) if guild_id and where.kind != "dm" else "dm",
        channel=channel,
        thread=thread,
        user=str(author.get("id", "")),
        user_name=display_name(payload),
        text=strip_bot_mention(payload.get("content") or "", bot_id, role_id),
        event_id=message_id,
        is_dm=where.kind == "dm",
        forwarded=forwarded,
        attachments=attachments_of(payload) + forwarded_files,
        mentioned=mentions_bot(payload, bot_id, role_id),
    )


def thread_name(text: str) -> str:
    """A thread title from the question: its first line, at most 100 characters."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = re.sub(r"\s+", " ", first) or "Architecture discussion"
    if len(first) <= THREAD_NAME_LIMIT:
        return first
    return first[: THREAD_NAME_LIMIT - 1].rstrip() + "…"


def where_of(channel: object) -> Where | None:
    """Classify a discord.py channel; None for ones the bot does not talk in."""
    if isinstance(channel, discord.Thread):
        return Where("thread", str(channel.id), str(channel.parent_id))
    if isinstance(channel, discord.DMChannel | discord.GroupChannel):
        return Where("dm", str(channel.id))
    if isinstance(channel, discord.TextChannel | discord.VoiceChannel | discord.StageChannel):
        return Where("channel", str(channel.id))
    return None


def _files_of(attachments: list[discord.Attachment]) -> list[dict[str, Any]]:
    return [
        {"filename": a.filename, "content_type": a.content_type, "size": a.size}
        for a in attachments
    ]


def payload_of(message: discord.Message) -> dict[str, Any]:
    """The fields of a discord.py Message that `incoming_from_payload` reads.

    Only a fallback: the client prefers the raw MESSAGE_CREATE payload, because
    discord.py loses `author.system` when it rebuilds a guild Member.
    """
    author = message.author
    ref = message.reference
    return {
        "type": message.type.value,
        "id": str(message.id),
        "channel_id": str(message.channel.id),
        "guild_id": str(message.guild.id) if message.guild else None,
        "content": message.content,
        "author": {
            "id": str(author.id),
            "username": author.name,
            "global_name": author.global_name,
            "bot": author.bot,
            "system": author.system,
        },
        "member": {"nick": getattr(author, "nick", None)},
        "mentions": [{"id": str(u.id)} for u in message.mentions],
        "mention_roles": [str(r) for r in message.raw_role_mentions],
        "webhook_id": str(message.webhook_id) if message.webhook_id else None,
        "attachments": _files_of(message.attachments),
        "message_reference": {
            "type": ref.type.value,
            "guild_id": str(ref.guild_id) if ref.guild_id else None,
            "channel_id": str(ref.channel_id),
            "message_id": str(ref.message_id) if ref.message_id else None,
        }
        if ref is not None
        else None,
        "message_snapshots": [
            {
                "message": {
                    "type": snap.type.value,
                    "content": snap.content,
                    "embeds": [e.to_dict() for e in snap.embeds],
                    "attachments": _files_of(snap.attachments),
                }
            }
            for snap in message.message_snapshots
        ],
    }


def context_from_messages(
    messages: list[discord.Message], bot_id: int
) -> tuple[ContextMessage, ...]:
    """Earlier thread messages (oldest first) as context for the core.

    Discord's notices (pins, joins) and messages with no words are skipped; a
    forward counts with the words it carries.
    """
    out: list[ContextMessage] = []
    for m in messages:
        if m.type.value not in PERSON_MESSAGE_TYPES:
            continue
        forwarded = [_snapshot_text({"content": s.content}) for s in m.message_snapshots]
        words = [strip_bot_mention(m.content, str(bot_id)), *forwarded]
        text = "\n\n".join(w for w in words if w)
        if not text:
            continue
        out.append(ContextMessage(user=m.author.display_name, text=text, is_bot=m.author.bot))
    return tuple(out)


def incoming_from_interaction(interaction: discord.Interaction[Any], text: str) -> IncomingMessage:
    """The core's event for an /archbot command: same thread key as a message in that place."""
    channel = interaction.channel
    channel_id = str(interaction.channel_id or (channel.id if channel else "0"))
    if isinstance(channel, discord.Thread):
        where = Where("thread", channel_id, str(channel.parent_id))
    elif interaction.guild_id is None:
        where = Where("dm", channel_id)
    else:
        where = Where("channel", channel_id)
    user = interaction.user
    payload = {
        "id": str(interaction.id),
        "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
        "content": text,
        "author": {"id": str(user.id), "username": user.name, "global_name": user.global_name},
    }
    msg = incoming_from_payload(payload, bot_id="0", where=where)
    if where.kind == "channel":  # no message to open a thread on: the channel itself is the thread
        msg = replace(msg, thread=channel_id)
    return msg


def command_text(*words: object) -> str:
    """Build the core command a slash command stands for, e.g. `!todo add X`."""
    return "!" + " ".join(str(w).strip() for w in words if w is not None and str(w).strip())
