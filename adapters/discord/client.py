"""The discord.py client wired to the core: which messages it answers, and how."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from adapters.discord.buttons import StopButton, VoteButton, stop_view, vote_view
from adapters.discord.commands import ArchbotCommands
from adapters.discord.connect import configure_api, describe_connect_error, skip_unparsable
from adapters.discord.outbox import (
    MESSAGE_LIMIT,
    NO_PINGS,
    DiscordOutbox,
    Sendable,
    discord_files,
)
from adapters.discord.translate import (
    context_from_messages,
    incoming_from_interaction,
    incoming_from_payload,
    is_from_bot,
    is_system_message,
    payload_of,
    thread_name,
    where_of,
)
from adapters.discord.working import WorkingMessage
from bot.app import Core
from bot.arrivals import ArrivalOrder, Place
from bot.commands import is_command
from bot.consultant import accept_correlation
from bot.errors import CommandError
from bot.events import ContextMessage, IncomingMessage, Reply
from bot.feedback import record_vote
from bot.formatting import split_markdown

log = logging.getLogger(__name__)

CONTEXT_MESSAGES = 50  # earlier thread messages read once when joining a thread
DEFER_AFTER = 2.0  # Discord wants an interaction response within 3 s
# How long discord.py waits for more GUILD_CREATEs after READY before it calls
# the bot ready (its default is 2 s). They stream in right after READY, and
# without the members intent nothing is chunked, so a quarter second is plenty.
GUILD_READY_TIMEOUT = 0.25
THREAD_EXISTS = 160004  # "A thread has already been created for this message"
NOT_ALLOWED = "You can't use archbot here (see [access] in the bot's config)."
RAW_KEPT = 256  # raw payloads waiting for on_message; it takes each within a loop turn or two
NOTHING_RUNNING = "Nothing is running here."
NOT_A_VOTE = "That button is not one archbot can use."
UNKNOWN_ANSWER = "That answer is not known here any more."


class ArchbotClient(discord.Client):
    """discord.py client wired to the core: dependencies passed in, async set-up in setup_hook."""

    def __init__(self, core: Core, *, api_url: str) -> None:
        # archbot never joins voice: skip discord.py's warnings about missing voice extras.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: switched on in the Developer Portal
        self.guild_ready_timeout = GUILD_READY_TIMEOUT
        super().__init__(
            intents=intents, allowed_mentions=NO_PINGS, guild_ready_timeout=GUILD_READY_TIMEOUT
        )
        configure_api(api_url)
        self.core = core
        self.api_url = api_url
        self.tree = app_commands.CommandTree(self)
        self.outbox = DiscordOutbox(self)
        self.stopping = False
        self.inflight: set[asyncio.Task[Any]] = set()
        self.synced_commands: list[app_commands.AppCommand] = []
        # Raw MESSAGE_CREATE payloads until on_message takes them: discord.py drops
        # `author.system` when it rebuilds a guild Member, and the raw payload has it.
        self._raw_messages: OrderedDict[str, Mapping[str, Any]] = OrderedDict()
        self._arrivals = ArrivalOrder()
        # Working messages on show, by message id: the thread whose turn their Stop stops.
        self._working: dict[int, str] = {}
        # A thread's answers in its turns' order: the core runs the next turn as soon as an
        # answer is stored, and discord.py's rate-limit bucket lets a later post jump its queue.
        self._deliveries = ArrivalOrder()
        self._guild_arrived = asyncio.Event()
        parsers = self._connection.parsers
        parsers["MESSAGE_CREATE"] = self._keeping_raw(parsers["MESSAGE_CREATE"])
        skip_unparsable(parsers)

    def _keeping_raw(self, parse: Callable[[Any], None]) -> Callable[[Any], None]:
        def parse_message_create(data: Any) -> None:
            if isinstance(data, dict):
                self._raw_messages[str(data.get("id"))] = data
                while len(self._raw_messages) > RAW_KEPT:
                    self._raw_messages.popitem(last=False)
            parse(data)

        return parse_message_create

    async def setup_hook(self) -> None:
        """Register the buttons, find the gateway through the configured API, sync /archbot."""
        # By custom_id, so buttons on messages sent before a restart are answered too.
        self.add_dynamic_items(StopButton, VoteButton)
        _shards, url, _limits = await self.http.get_bot_gateway()
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
        log.info("discord gateway: %s", url)
        self.tree.add_command(ArchbotCommands(self))
        try:
            self.synced_commands = await self.tree.sync()
        except discord.HTTPException as exc:
            log.warning(
                "could not sync /archbot application commands: %s", describe_connect_error(exc)
            )
        else:
            log.info("synced %d application command(s)", len(self.synced_commands))

    async def wait_until_serving(self) -> None:
        """Return once READY and every guild it listed have arrived, or discord.py calls it ready.

        discord.py's own ready waits `guild_ready_timeout` after the last GUILD_CREATE even
        when READY said how many were coming; events are handled either way, so start-up
        need not wait out that timer.
        """
        ready = asyncio.ensure_future(self.wait_until_ready())
        try:
            while not ready.done():
                self._guild_arrived.clear()
                guilds = self.guilds
                if self.user is not None and guilds and not any(g.unavailable for g in guilds):
                    return
                arrived = asyncio.ensure_future(self._guild_arrived.wait())
                await asyncio.wait({ready, arrived}, return_when=asyncio.FIRST_COMPLETED)
                arrived.cancel()
        finally:
            ready.cancel()

    async def on_guild_available(self, guild: discord.Guild) -> None:
        """A guild READY listed has arrived: start-up may be waiting for it."""
        self._guild_arrived.set()

    async def on_ready(self) -> None:
        """Log who we are once the gateway is up."""
        log.info("discord: logged in as %s (id %s)", self.user, self.user.id if self.user else "?")

    async def on_message(self, message: discord.Message) -> None:
        """Decide whether to answer; if so run one turn and post the reply."""
        raw = self._raw_messages.pop(str(message.id), None)
        accept_correlation(f"discord-{message.id}")
        if self.stopping or self.user is None or message.author.bot:
            return
        task = asyncio.current_task()
        if task is not None:
            self.inflight.add(task)
        try:
            await self._on_message(message, raw or payload_of(message))
        except Exception:
            log.exception("discord: handling message %s failed", message.id)
        finally:
            if task is not None:
                self.inflight.discard(task)

    async def _on_message(self, message: discord.Message, payload: Mapping[str, Any]) -> None:
        assert self.user is not None
        bot_id = self.user.id
        if is_from_bot(payload) or is_system_message(payload):
            log.debug("discord: ignoring message %s (type %s)", message.id, payload.get("type"))
            return
        channel: object = message.channel
        if isinstance(channel, discord.PartialMessageable) and message.guild is not None:
            # A thread we never got THREAD_CREATE for: ask what it is.
            channel = await self.fetch_channel(channel.id)
        where = where_of(channel)
        if where is None:
            return
        own_role = message.guild.self_role if message.guild else None
        role_id = str(own_role.id) if own_role else None
        msg = incoming_from_payload(payload, bot_id=str(bot_id), where=where, role_id=role_id)
        if not msg.has_content and not msg.mentioned:
            log.debug("discord: ignoring message %s: nothing to read", message.id)
            return
        consultant = self.core.consultant
        assert isinstance(channel, discord.abc.Messageable)
        target: Sendable = channel
        read_context = open_thread = False
        if where.kind == "thread":
            assert isinstance(channel, discord.Thread)
            known = consultant.knows_thread(msg.thread_key)
            if not known and not msg.mentioned:
                return
            read_context = not known and consultant.allowed(msg)
        elif where.kind == "channel":
            if not msg.mentioned or not consultant.allowed(msg):
                return
            if is_command(msg.text):
                # `@archbot !help` in a channel: answer in place, keyed like /archbot there.
                msg = replace(msg, thread=msg.channel)
            else:
                open_thread = True
        if read_context or open_thread:
            # Join now, before any await: a thread opened on this message has the message's
            # id, so follow-ups typed while it opens (or while context is read) carry this key.
            consultant.accept(msg)
        place = self._arrivals.arrive(msg.thread_key)
        try:
            if read_context:
                assert isinstance(channel, discord.Thread)
                msg = replace(msg, prior_context=await self._thread_context(channel, message))
            if open_thread:
                target = await self._open_thread(message, msg.text)
            await self.answer(target, msg, place)
        finally:
            place.leave()

    async def answer(
        self, target: Sendable, msg: IncomingMessage, place: Place | None = None
    ) -> None:
        """One turn with the typing indicator on; the reply is posted in parts.

        With `place`, the core gets the message only once the thread's earlier
        message is stored in the core; the indicator already shows while it waits.
        A model turn also gets a working message (progress lines and a Stop button);
        an answer's last part carries 👍 / 👎.
        """
        consultant = self.core.consultant
        delivery: list[Place] = []

        def queued() -> None:
            # Called in the core's order; a read-only command is answered at once, out of line.
            if not (is_command(msg.text) and consultant.commands.is_read_only(msg.text)):
                delivery.append(self._deliveries.arrive(msg.thread_key))
            if place is not None:
                place.leave()

        try:
            async with target.typing():
                if place is not None:
                    await place.turn()
                working = None
                if not is_command(msg.text):
                    key = msg.thread_key
                    working = WorkingMessage(
                        target, stop_view, on_posted=lambda m: self._working.__setitem__(m.id, key)
                    )
                    working.start()
                try:
                    # The next message of the thread may go once this one is stored and queued
                    # in the core (which keeps the order from there), not only once answered.
                    reply = await consultant.handle(
                        msg,
                        on_queued=queued,
                        on_progress=working.progress if working else None,
                    )
                finally:
                    if working is not None:
                        await working.finish()  # the Stop button goes before the answer comes
                        if working.message is not None:
                            self._working.pop(working.message.id, None)
                if reply is None:
                    return
                for ours in delivery:
                    await ours.turn()
                votes = vote_view(reply.turn_id) if reply.takes_feedback and reply.turn_id else None
                try:
                    await self.outbox.send(target, reply.text, reply.files, view=votes)
                except discord.HTTPException as exc:
                    log.error(
                        "posting the reply to %s failed (%s %s); the answer stays stored",
                        msg.thread_key,
                        exc.status,
                        exc.text,
                    )
                    return
        finally:
            for ours in delivery:
                ours.leave()
        consultant.mark_delivered(reply)
        await self._send_diagrams(target, reply)

    async def _send_diagrams(self, target: Sendable, reply: Reply) -> None:
        """After the answer's text, its rendered Mermaid diagrams as one message of attachments."""
        diagrams = await self.core.attachments(reply)
        if not diagrams:
            return
        names = ", ".join(f.name.removesuffix(".png") for f in diagrams)
        try:
            await self.outbox.send(target, f"-# Drawn from the Mermaid above: {names}", diagrams)
        except discord.HTTPException as exc:
            log.error("posting diagrams to %s failed (%s)", reply.thread_key, exc.status)

    async def _open_thread(self, message: discord.Message, text: str) -> Sendable:
        """A public thread on the message; on failure the channel itself."""
        try:
            return await message.create_thread(name=thread_name(text))
        except discord.HTTPException as exc:
            if exc.code == THREAD_EXISTS:  # a redelivery: the thread is already there
                with contextlib.suppress(discord.HTTPException):
                    existing = await self.fetch_channel(message.id)
                    if isinstance(existing, discord.Thread):
                        return existing
            log.warning(
                "could not open a thread on message %s (%s); answering in the channel",
                message.id,
                exc.status,
            )
        assert isinstance(message.channel, discord.abc.Messageable)
        return message.channel

    async def _thread_context(
        self, thread: discord.Thread, before: discord.Message
    ) -> tuple[ContextMessage, ...]:
        """The thread's latest earlier messages (and its starter), read once when first mentioned."""
        assert self.user is not None
        earlier: list[discord.Message] = []
        parent = thread.parent
        if isinstance(parent, discord.TextChannel):
            # A thread opened on a channel message: that message (same id) lives in the parent.
            with contextlib.suppress(discord.HTTPException):
                earlier.append(await parent.fetch_message(thread.id))
        try:
            newest_first = [m async for m in thread.history(limit=CONTEXT_MESSAGES, before=before)]
        except discord.HTTPException as exc:
            log.warning("could not read earlier messages of thread %s (%s)", thread.id, exc.status)
            newest_first = []
        earlier.extend(reversed(newest_first))
        return context_from_messages(earlier, self.user.id)

    # application commands ---------------------------------------------------------

    async def run_command(self, interaction: discord.Interaction[Any], text: str) -> None:
        """Run a core !command for a slash command; defer when it takes more than a moment."""
        msg = incoming_from_interaction(interaction, text)
        accept_correlation(f"discord-{msg.event_id}")
        consultant = self.core.consultant
        work = asyncio.ensure_future(consultant.handle(msg))
        done, _ = await asyncio.wait({work}, timeout=DEFER_AFTER)
        if not done:
            await interaction.response.defer(thinking=True)
        reply = await work
        body = reply.text if reply is not None else NOT_ALLOWED
        parts = split_markdown(body, MESSAGE_LIMIT) or [body]
        files = reply.files if reply is not None else ()
        for number, part in enumerate(parts, 1):
            # A reply's files (an ADR's .md) ride on its last part, as in a thread.
            attached = discord_files(files) if number == len(parts) else []
            if number == 1 and not interaction.response.is_done():
                await interaction.response.send_message(
                    part, allowed_mentions=NO_PINGS, files=attached
                )
            else:
                await interaction.followup.send(part, allowed_mentions=NO_PINGS, files=attached)
        if reply is not None:
            consultant.mark_delivered(reply)

    # buttons ------------------------------------------------------------------------

    def _click_allowed(self, interaction: discord.Interaction[Any]) -> IncomingMessage | None:
        """The click as the core's event, when a person allowed by [access] made it."""
        if interaction.user.bot:
            return None
        msg = incoming_from_interaction(interaction, "")
        return msg if self.core.consultant.allowed(msg) else None

    async def stop_clicked(self, interaction: discord.Interaction[Any]) -> None:
        """Stop the turn behind a working message; the click is answered at once."""
        accept_correlation(f"discord-{interaction.id}")
        msg = self._click_allowed(interaction)
        if msg is None:
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
            return
        message = interaction.message
        key = self._working.get(message.id) if message is not None else None
        if key is None or not self.core.consultant.stop(key, msg.user):
            # A working message from before a restart: its turn died with that process.
            await interaction.response.send_message(NOTHING_RUNNING, ephemeral=True)
            return
        # Answering with the message minus its button: no second click, "Stopped." follows.
        await interaction.response.edit_message(view=None)

    async def vote_clicked(
        self, interaction: discord.Interaction[Any], vote: tuple[str, int] | None
    ) -> None:
        """Store a 👍 / 👎 (the latest click per answer and person counts); answer at once."""
        accept_correlation(f"discord-{interaction.id}")
        msg = self._click_allowed(interaction)
        if msg is None:
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True)
            return
        if vote is None:
            log.warning("discord: a click on a malformed vote button in %s", msg.thread_key)
            await interaction.response.send_message(NOT_A_VOTE, ephemeral=True)
            return
        choice, turn_id = vote
        try:
            record_vote(self.core.store, turn_id, msg.user, choice)
        except CommandError:
            log.warning("discord: a vote on unknown answer %s", turn_id)
            await interaction.response.send_message(UNKNOWN_ANSWER, ephemeral=True)
            return
        log.info("discord: %s voted %s on turn %s", msg.user, choice, turn_id)
        emoji = "👍" if choice == "up" else "👎"
        await interaction.response.send_message(f"Thanks: noted {emoji}", ephemeral=True)
