"""`archbot run`'s and `archbot doctor`'s handle on Discord: start, stop, check."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord

from adapters.discord.client import ArchbotClient
from adapters.discord.connect import configure_api, describe_connect_error
from adapters.discord.translate import PLATFORM
from bot.app import Core
from bot.errors import ArchbotError
from bot.settings import Secrets, Settings

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
DRAIN_SECONDS = 10.0


class DiscordAdapter:
    """`archbot run`'s handle on the Discord connection."""

    platform = PLATFORM

    def __init__(self, core: Core) -> None:
        self.core = core
        self.client = ArchbotClient(core, api_url=core.settings.discord.api_url)
        self.outbox = self.client.outbox
        self._connection: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Log in, connect to the gateway and return once READY (or raise a one-line error)."""
        token = self.core.secrets.discord_token
        if token is None or not token.get_secret_value():
            raise ArchbotError(
                "DISCORD_TOKEN is not set: put the bot token from the Developer Portal "
                "in the environment"
            )
        try:
            await self.client.login(token.get_secret_value())
        except Exception as exc:
            await self.client.close()
            raise ArchbotError(describe_connect_error(exc)) from None
        self._connection = asyncio.create_task(
            self.client.connect(reconnect=True), name="discord-gateway"
        )
        ready = asyncio.create_task(self.client.wait_until_serving())
        done, _ = await asyncio.wait(
            {self._connection, ready}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            error = self._connection.exception() if self._connection in done else None
            await self.stop()
            if error is None:
                raise ArchbotError(f"Discord gateway not ready after {READY_TIMEOUT:.0f}s")
            raise ArchbotError(describe_connect_error(error))
        self._connection.add_done_callback(self._connection_ended)

    async def wait_closed(self) -> str:
        """Return (with the reason) once the gateway connection has ended for good."""
        assert self._connection is not None, "start() first"
        await asyncio.wait({self._connection})  # neither raises its error nor cancels it
        if self._connection.cancelled():
            return "the Discord gateway connection was cancelled"
        error = self._connection.exception()
        if error is not None:
            return describe_connect_error(error)
        return "the Discord gateway connection closed"

    def _connection_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.client.stopping:
            return
        error = task.exception()
        if error is not None:
            log.error("discord: %s", describe_connect_error(error))

    async def stop(self) -> None:
        """Stop taking messages, let in-flight turns post their answers, then disconnect."""
        self.client.stopping = True
        pending = [t for t in self.client.inflight if t is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_SECONDS)
        if self._connection is not None and not self._connection.done():
            # start() returns before discord.py's own ready, which it dispatches from a
            # timer; closed first, that dispatch finds no loop and its coroutine is lost.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.client.wait_until_ready(), self.client.guild_ready_timeout + 1.0
                )
        await self.client.close()
        if self._connection is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._connection

    async def check(self) -> str:
        """Who we are logged in as."""
        user = self.client.user
        if user is None:
            raise ArchbotError("not logged in to Discord")
        return f"logged in as {user} (id {user.id})"


def create_adapter(core: Core) -> DiscordAdapter:
    """Build the Discord adapter for `archbot run`."""
    return DiscordAdapter(core)


async def doctor_check(settings: Settings, secrets: Secrets) -> str | None:
    """Log in with DISCORD_TOKEN (REST `users/@me`) and report the bot user."""
    if not settings.discord.enabled:
        return None
    token = secrets.discord_token
    if token is None or not token.get_secret_value():
        raise ArchbotError("DISCORD_TOKEN is not set")
    configure_api(settings.discord.api_url)
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    try:
        data = await http.static_login(token.get_secret_value())
    except Exception as exc:
        raise ArchbotError(describe_connect_error(exc)) from None
    finally:
        await http.close()
    return f"logged in as {data['username']} (id {data['id']}) via {settings.discord.api_url}"
