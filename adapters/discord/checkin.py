"""Posting check-ins to Discord through REST alone: `Client.login` and no gateway.

The message goes to the channel, a public thread is opened on it (the thread's
id is the message's id, as for threads the live adapter opens on a mention),
and any further parts of a long check-in continue inside that thread.
"""

from __future__ import annotations

import logging

import discord

from adapters.discord.connect import configure_api, describe_connect_error
from adapters.discord.outbox import MESSAGE_LIMIT, NO_PINGS
from adapters.discord.translate import PLATFORM, SNOWFLAKE, thread_name
from bot.checkins.engine import PostedMessage
from bot.errors import ArchbotError
from bot.formatting import split_markdown
from bot.settings import Secrets, Settings

log = logging.getLogger(__name__)


class DiscordCheckinPoster:
    """Posts a check-in with a logged-in (REST only) discord.py client."""

    platform = PLATFORM

    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self._guilds: dict[str, str] = {}

    async def _text_channel(self, channel: str) -> discord.TextChannel:
        if not SNOWFLAKE.fullmatch(channel):
            raise ArchbotError(f"Discord channel {channel[:40]!r} is not a channel id")
        try:
            found = await self.client.fetch_channel(int(channel))
        except discord.HTTPException as exc:
            raise ArchbotError(describe_connect_error(exc)) from None
        if not isinstance(found, discord.TextChannel):
            raise ArchbotError(f"Discord channel {channel} is not a text channel")
        return found

    async def workspace(self, channel: str) -> str:
        """The guild id of the channel (the workspace part of Discord thread keys)."""
        if channel not in self._guilds:
            self._guilds[channel] = str((await self._text_channel(channel)).guild.id)
        return self._guilds[channel]

    def thread_link(self, workspace: str, channel: str, thread: str) -> str | None:
        """`https://discord.com/channels/GUILD/THREAD` for snowflake ids."""
        if not all(SNOWFLAKE.fullmatch(x) for x in (workspace, thread)):
            return None
        return f"https://discord.com/channels/{workspace}/{thread}"

    async def post(self, channel: str, title: str, text: str) -> PostedMessage:
        """The first part in the channel, a thread on it, the other parts in the thread."""
        target = await self._text_channel(channel)
        parts = split_markdown(text, MESSAGE_LIMIT) or [text]
        try:
            first = await target.send(parts[0], allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            raise ArchbotError(describe_connect_error(exc)) from None
        try:
            thread = await first.create_thread(name=thread_name(title))
            for part in parts[1:]:
                await thread.send(part, allowed_mentions=NO_PINGS)
        except discord.HTTPException as exc:
            # The check-in is posted; replies can still open the thread on it.
            log.error("discord: the check-in thread on %s is incomplete: %s", first.id, exc)
        return PostedMessage(str(first.id), str(first.id), first.jump_url)

    async def aclose(self) -> None:
        """Log out (closes the HTTP session)."""
        await self.client.close()


async def create_poster(settings: Settings, secrets: Secrets) -> DiscordCheckinPoster:
    """Log in with DISCORD_TOKEN over REST (`users/@me`); no gateway connection is opened."""
    token = secrets.discord_token
    if token is None or not token.get_secret_value():
        raise ArchbotError("DISCORD_TOKEN is not set: put the bot token in the environment")
    configure_api(settings.discord.api_url)
    # No voice here; and the guilds intent only keeps discord.py from warning (no gateway).
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    client = discord.Client(intents=discord.Intents(guilds=True), allowed_mentions=NO_PINGS)
    try:
        await client.login(token.get_secret_value())
    except Exception as exc:
        await client.close()
        raise ArchbotError(describe_connect_error(exc)) from None
    return DiscordCheckinPoster(client)
