"""Posting to Discord: split at 2000 chars, no pings, archived threads reopened."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import discord

from adapters.discord.translate import PLATFORM, thread_name
from bot.errors import ArchbotError
from bot.events import ReplyFile
from bot.formatting import split_markdown

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000  # Discord rejects longer content with 400 / code 50035
ARCHIVED_THREAD = 50083  # "Thread is archived" error code
NO_PINGS = discord.AllowedMentions.none()
MAX_FILES = 10  # attachments Discord takes on one message

Sendable = discord.abc.Messageable


class DiscordOutbox:
    """Renders and posts Markdown: split at 2000 chars, no pings, archived threads handled."""

    platform = PLATFORM

    def __init__(self, client: discord.Client) -> None:
        self.client = client

    async def post(self, channel: str, thread: str | None, text: str) -> str:
        """Post to a channel (thread=None: top level) or a thread; return the first part's id."""
        target: Sendable
        if thread is None or thread == channel:
            target = await self._channel(int(channel))
        else:
            target = await self._thread(int(channel), int(thread))
        sent = await self.send(target, text)
        return str(sent[0].id)

    async def send(
        self,
        target: Sendable | _LinkedParent,
        text: str,
        files: Sequence[ReplyFile] = (),
        view: discord.ui.View | None = None,
    ) -> list[discord.Message]:
        """Send `text` in parts of at most 2000 chars; the sign-off stays on the last part.

        `files` and `view` (an answer's 👍 / 👎) go on the last part.
        """
        parts = split_markdown(text, MESSAGE_LIMIT) or [text]
        if isinstance(target, discord.Thread) and target.archived:
            target = await self._reopen(target)
        sent: list[discord.Message] = []
        for number, part in enumerate(parts, 1):
            last = number == len(parts)
            attached = files[:MAX_FILES] if last else ()
            buttons = view if last else None
            try:
                sent.append(await _send(target, part, attached, buttons))
            except discord.HTTPException as exc:
                if exc.code != ARCHIVED_THREAD or not isinstance(target, discord.Thread):
                    raise
                target = await self._reopen(target)
                sent.append(await _send(target, part, attached, buttons))
        return sent

    async def _reopen(self, thread: discord.Thread) -> Sendable | _LinkedParent:
        """Unarchive a thread; if that is not allowed, answer in its parent with a link."""
        try:
            return await thread.edit(archived=False)
        except discord.HTTPException as exc:
            log.warning(
                "cannot unarchive thread %s (%s); answering in its parent", thread.id, exc.status
            )
        return _LinkedParent(await self._channel(thread.parent_id), thread)

    async def _channel(self, channel_id: int) -> Sendable:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            channel = await self.client.fetch_channel(channel_id)
        if not isinstance(channel, discord.abc.Messageable):
            raise ArchbotError(f"Discord channel {channel_id} cannot take messages")
        return channel

    async def _thread(self, channel_id: int, thread_id: int) -> Sendable:
        """The thread with this id, or a new one opened on the message with this id."""
        try:
            return await self._channel(thread_id)
        except discord.NotFound:
            pass
        parent = await self._channel(channel_id)
        if not isinstance(parent, discord.TextChannel):
            return parent
        starter = await parent.fetch_message(thread_id)
        return await starter.create_thread(name=thread_name(starter.content))


async def _send(
    target: Sendable | _LinkedParent,
    part: str,
    files: Sequence[ReplyFile],
    view: discord.ui.View | None = None,
) -> discord.Message:
    """One message, with `files` as attachments (fresh File objects: a send consumes them)."""
    if view is not None and files:
        return await target.send(
            part, allowed_mentions=NO_PINGS, files=discord_files(files), view=view
        )
    if view is not None:
        return await target.send(part, allowed_mentions=NO_PINGS, view=view)
    if files:
        return await target.send(part, allowed_mentions=NO_PINGS, files=discord_files(files))
    return await target.send(part, allowed_mentions=NO_PINGS)


def discord_files(files: Sequence[ReplyFile]) -> list[discord.File]:
    """Fresh discord.File objects for a reply's files (a send consumes them)."""
    return [discord.File(io.BytesIO(f.content), filename=f.name) for f in files[:MAX_FILES]]


class _LinkedParent:
    """Sends into a thread's parent channel, first pointing at the archived thread."""

    def __init__(self, parent: Sendable, thread: discord.Thread) -> None:
        self.parent = parent
        self.thread = thread
        self._linked = False

    async def send(
        self,
        content: str,
        *,
        allowed_mentions: discord.AllowedMentions,
        files: list[discord.File] | None = None,
        view: discord.ui.View | None = None,
    ) -> discord.Message:
        """Send one part; the first carries a link to the thread it belongs to."""
        if not self._linked:
            self._linked = True
            note = f"(reply to {self.thread.jump_url}, which is archived)\n\n"
            if len(note) + len(content) <= MESSAGE_LIMIT:
                content = note + content
            else:
                await self.parent.send(note.strip(), allowed_mentions=allowed_mentions)
        if view is not None and files:
            return await self.parent.send(
                content, allowed_mentions=allowed_mentions, files=files, view=view
            )
        if view is not None:
            return await self.parent.send(content, allowed_mentions=allowed_mentions, view=view)
        if files:
            return await self.parent.send(content, allowed_mentions=allowed_mentions, files=files)
        return await self.parent.send(content, allowed_mentions=allowed_mentions)
