"""Pure translation between Discord payloads and the core's IncomingMessage."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import discord

from bot.events import ContextMessage, IncomingMessage

PLATFORM = "discord"
THREAD_NAME_LIMIT = 100


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
    """Messages by bots (and webhooks) are never answered."""
    author = payload.get("author") or {}
    return bool(author.get("bot") or author.get("system") or payload.get("webhook_id"))


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


def payload_of(message: discord.Message) -> dict[str, Any]:
    """The fields of a discord.py Message that `incoming_from_payload` reads."""
    author = message.author
    return {
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
    }


def context_from_messages(
    messages: list[discord.Message], bot_id: int
) -> tuple[ContextMessage, ...]:
    """Earlier thread messages (oldest first) as context for the core; empty ones skipped."""
    out: list[ContextMessage] = []
    for m in messages:
        text = strip_bot_mention(m.content, str(bot_id))
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
