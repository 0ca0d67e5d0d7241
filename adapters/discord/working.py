"""The working message: "Working on it…" with a Stop button, edited with the tool progress.

It appears once the turn has run for `SHOW_AFTER` seconds or at its first tool
call, whichever comes first, so a quick answer never flashes a message (the
typing indicator shows from the start). Each tool call is one line, edited in
place; edits are coalesced to one per `EDIT_EVERY` seconds, since Discord allows
about five message edits per five seconds in a channel. When the turn ends the
message loses its Stop button: with tool calls it keeps their lines (what was
looked at, with GitHub links) above the answer; without any it is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import discord

from adapters.discord.outbox import MESSAGE_LIMIT, NO_PINGS, Sendable
from bot.progress import Source, ToolProgress

log = logging.getLogger(__name__)

SHOW_AFTER = 1.5  # seconds before a turn without tool calls shows its working message
EDIT_EVERY = 1.2  # seconds between edits of one working message
HEADING = "Working on it…"
LINK_SAFE_TITLE = str.maketrans("", "", "[]()<>\\*_~`|")


def _link(source: Source) -> str:
    """A masked link in `<>` (no embed preview), or "" for anything but a plain GitHub URL."""
    url = source.url
    if not url.startswith("https://github.com/") or any(c in url for c in "<> ()\n"):
        return ""
    title = " ".join(source.title.translate(LINK_SAFE_TITLE).split())[:80]
    return f"[{title or 'GitHub'}](<{url}>)"


def progress_line(item: ToolProgress) -> str:
    """One tool call as one line: its mark and title, then its first GitHub link."""
    link = _link(item.sources[0]) if item.sources else ""
    return f"{item.line} · {link}" if link else item.line


def working_text(items: Sequence[ToolProgress], *, done: bool = False) -> str:
    """The working message's content, at most 2000 chars: the latest lines win.

    While the turn runs: the heading, then a line per tool call. Once it is done:
    only the lines, as small text (`-#`), a record of what was looked at.
    """
    prefix = "-# " if done else ""
    lines = [prefix + progress_line(item) for item in items]
    head = [] if done else [HEADING]
    dropped = 0

    def render() -> str:
        more = [f"{prefix}… and {dropped} earlier step{'s' if dropped != 1 else ''}"]
        return "\n".join(head + (more if dropped else []) + lines[dropped:])

    text = render()
    while len(text) > MESSAGE_LIMIT and dropped < len(lines) - 1:
        dropped += 1
        text = render()
    return text[:MESSAGE_LIMIT]


class WorkingMessage:
    """One turn's working message: shown late or at the first tool call, edited, finalised."""

    def __init__(
        self,
        target: Sendable,
        view: Callable[[], discord.ui.View],
        *,
        on_posted: Callable[[discord.Message], None] | None = None,
        show_after: float | None = None,
        edit_every: float | None = None,
    ) -> None:
        self.target = target
        self.message: discord.Message | None = None
        self._view = view
        self._on_posted = on_posted
        self._show_after = SHOW_AFTER if show_after is None else show_after
        self._edit_every = EDIT_EVERY if edit_every is None else edit_every
        self._items: dict[str, ToolProgress] = {}
        self._changed = asyncio.Event()
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the clock: the message appears after `show_after` or at the first tool call."""
        self._task = asyncio.create_task(self._run(), name="discord-working-message")

    async def progress(self, item: ToolProgress) -> None:
        """The core's progress sink: a tool call started or ended (shown at the next edit)."""
        self._items[item.id] = item
        self._changed.set()

    async def finish(self) -> None:
        """The turn has ended: remove the Stop button, keep the lines (or delete the message)."""
        self._closed.set()
        self._changed.set()
        if self._task is not None:
            try:
                await self._task  # an HTTP call under way ends first: no message is left behind
            finally:
                if not self._task.done():
                    self._task.cancel()
        message = self.message
        if message is None:
            return
        try:
            if self._items:
                await message.edit(
                    content=working_text(list(self._items.values()), done=True),
                    view=None,
                    allowed_mentions=NO_PINGS,
                )
            else:
                await message.delete()
        except discord.HTTPException as exc:
            log.warning("could not finish working message %s (%s)", message.id, exc.status)

    async def _run(self) -> None:
        try:
            await self._wait(self._changed, self._show_after)
            if self._closed.is_set():
                return
            self._changed.clear()
            shown = working_text(list(self._items.values()))
            self.message = await self.target.send(
                shown, view=self._view(), allowed_mentions=NO_PINGS
            )
            if self._on_posted is not None:
                self._on_posted(self.message)
            edited = time.monotonic()
            while not self._closed.is_set():
                await self._changed.wait()
                # Coalesce: every change until the next allowed edit goes into one edit.
                await self._wait(self._closed, edited + self._edit_every - time.monotonic())
                if self._closed.is_set():
                    return
                self._changed.clear()
                text = working_text(list(self._items.values()))
                if text != shown:
                    await self.message.edit(content=text, allowed_mentions=NO_PINGS)
                    shown, edited = text, time.monotonic()
        except discord.HTTPException as exc:
            # The turn goes on without its working message (deleted by a moderator, ...).
            log.warning("the working message stopped updating (%s %s)", exc.status, exc.text)
        except Exception:
            log.exception("the working message failed; the turn goes on")

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        """Until the event is set or the time is up."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
