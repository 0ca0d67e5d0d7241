"""The buttons: Stop on the working message, 👍 / 👎 on an answer's last message.

Both are `discord.ui.DynamicItem`s, registered once in `setup_hook` with
`add_dynamic_items`, so a click is dispatched by its `custom_id` alone, also for
a message posted before a restart. The vote's `custom_id` carries the turn id
(`archbot:vote:up:123`); the Stop button's is fixed (`archbot:stop`) and the
client maps the working message's id to its thread, in this process only: a
turn dies with its process, so a stale Stop gets "Nothing is running here.".

A `custom_id` comes back in a click payload, so it is parsed as hostile: the
templates match anything under the prefix, and a malformed one is answered
politely instead of being left to fail.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

import discord

STOP_ID = "archbot:stop"
VOTE_PREFIX = "archbot:vote:"
VOTE_EMOJI = {"up": "👍", "down": "👎"}
_VOTE_ID = re.compile(r"archbot:vote:(up|down):([1-9][0-9]{0,17})")
CUSTOM_ID_LIMIT = 100  # Discord rejects longer custom_ids


@runtime_checkable
class ButtonHandler(Protocol):
    """What the buttons need of the client: what a click does."""

    async def stop_clicked(self, interaction: discord.Interaction[Any]) -> None:
        """Stop the turn behind this working message, and answer the click."""
        ...

    async def vote_clicked(
        self, interaction: discord.Interaction[Any], vote: tuple[str, int] | None
    ) -> None:
        """Store a 👍 / 👎 (None: a custom_id that is not a vote), and answer the click."""
        ...


def vote_custom_id(vote: str, turn_id: int) -> str:
    """`archbot:vote:up:123`: the button's id, which survives restarts."""
    if vote not in VOTE_EMOJI or turn_id < 1:
        raise ValueError(f"not a vote: {vote!r} on {turn_id}")
    return f"{VOTE_PREFIX}{vote}:{turn_id}"


def parse_vote(custom_id: str) -> tuple[str, int] | None:
    """("up" | "down", turn id) from a vote button's custom_id; None for anything else."""
    match = _VOTE_ID.fullmatch(custom_id) if len(custom_id) <= CUSTOM_ID_LIMIT else None
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def _handler(interaction: discord.Interaction[Any]) -> ButtonHandler | None:
    client = interaction.client
    return client if isinstance(client, ButtonHandler) else None


class StopButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=re.escape(STOP_ID)):
    """The working message's Stop button."""

    def __init__(self) -> None:
        super().__init__(
            discord.ui.Button(label="Stop", style=discord.ButtonStyle.danger, custom_id=STOP_ID)
        )

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> StopButton:
        """Any click on a Stop button, before or after a restart."""
        return cls()

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Hand the click to the client."""
        handler = _handler(interaction)
        if handler is not None:
            await handler.stop_clicked(interaction)


class VoteButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=re.escape(VOTE_PREFIX) + r".*"
):
    """👍 or 👎 on one answer; the custom_id names the vote and the answer's turn."""

    def __init__(self, vote: str, turn_id: int, *, custom_id: str | None = None) -> None:
        super().__init__(
            discord.ui.Button(
                emoji=VOTE_EMOJI.get(vote, "❔"),
                style=discord.ButtonStyle.secondary,
                custom_id=custom_id or vote_custom_id(vote, turn_id),
            )
        )
        self.vote = parse_vote(self.custom_id)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> VoteButton:
        """Rebuild the button from a click; a malformed id is kept and answered as such."""
        custom_id = match.group(0)
        vote, turn_id = parse_vote(custom_id) or ("", 0)
        return cls(vote, turn_id, custom_id=custom_id)

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Hand the click to the client."""
        handler = _handler(interaction)
        if handler is not None:
            await handler.vote_clicked(interaction, self.vote)


def stop_view() -> discord.ui.View:
    """The persistent view on a working message: one Stop button (no timeout)."""
    view = discord.ui.View(timeout=None)
    view.add_item(StopButton())
    return view


def vote_view(turn_id: int) -> discord.ui.View:
    """The persistent view on an answer's last message: 👍 and 👎 for its turn."""
    view = discord.ui.View(timeout=None)
    for vote in VOTE_EMOJI:
        view.add_item(VoteButton(vote, turn_id))
    return view
