"""The Discord adapter: discord.py client -> IncomingMessage -> core -> Reply -> Discord.

When it answers: a mention in a guild text channel opens a public thread on
that message (thread id == message id) and the answer goes there; later
messages in a thread it knows are answered without a mention; DMs are always
answered; bots, itself included, never. Mentioned inside a thread it has not
seen, it reads that thread's earlier messages once as context.

Everything the bot sends carries `AllowedMentions.none()` (also set on the
client), so `@everyone` or role mentions written by the model ping nobody.
Rate limits and gateway reconnects are discord.py's own.

`[discord] api_url` sets the REST base; the gateway is whatever that API
returns from `/gateway/bot`, so one key points the whole client at a proxy
or a test server, and production (real Discord) is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import aiohttp
import yarl

from bot.app import Core
from bot.commands import is_command
from bot.errors import ArchbotError
from bot.events import ContextMessage, IncomingMessage
from bot.formatting import split_markdown
from bot.settings import Secrets, Settings

with warnings.catch_warnings():
    # discord.py 2.7 imports the stdlib `audioop` (voice), deprecated since Python 3.11;
    # importing the adapter must not trip `-W error` or pytest's filterwarnings=error.
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord
    from discord import app_commands
    from discord.gateway import DiscordWebSocket

log = logging.getLogger(__name__)

PLATFORM = "discord"
MESSAGE_LIMIT = 2000  # Discord rejects longer content with 400 / code 50035
THREAD_NAME_LIMIT = 100
CONTEXT_MESSAGES = 50  # earlier thread messages read once when joining a thread
DEFER_AFTER = 2.0  # Discord wants an interaction response within 3 s
READY_TIMEOUT = 60.0
# How long discord.py waits for more GUILD_CREATEs after READY before it calls
# the bot ready (its default is 2 s). They stream in right after READY, and
# without the members intent nothing is chunked, so a quarter second is plenty.
GUILD_READY_TIMEOUT = 0.25
DRAIN_SECONDS = 10.0
ARCHIVED_THREAD = 50083  # "Thread is archived" error code
THREAD_EXISTS = 160004  # "A thread has already been created for this message"

NO_PINGS = discord.AllowedMentions.none()
NOT_ALLOWED = "You can't use archbot here (see [access] in the bot's config)."

INTENT_HELP = (
    "Discord refused the gateway connection (close code 4014, disallowed intent): turn on "
    '"Message Content Intent" in the Developer Portal (Applications > your bot > Bot > '
    "Privileged Gateway Intents), save, then start archbot again"
)


# pure translation -------------------------------------------------------------------


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


def configure_api(api_url: str) -> None:
    """Point discord.py's REST calls (and interaction webhooks) at `api_url`."""
    discord.http.Route.BASE = api_url.rstrip("/")


def describe_connect_error(exc: BaseException) -> str:
    """One readable line for a failed login or gateway connection (never the token)."""
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return INTENT_HELP
    if isinstance(exc, discord.ConnectionClosed) and exc.code == 4014:
        return INTENT_HELP
    if isinstance(exc, discord.LoginFailure):
        return (
            "Discord rejected DISCORD_TOKEN (401 Unauthorized): "
            "copy the bot token again from the Developer Portal"
        )
    if isinstance(exc, discord.ConnectionClosed):
        reason = exc.reason or "no reason given"
        return f"Discord closed the gateway connection (close code {exc.code}): {reason}"
    if isinstance(exc, discord.GatewayNotFound):
        return (
            "Discord did not tell us its gateway address (GET /gateway/bot failed); "
            "check [discord] api_url"
        )
    if isinstance(exc, discord.HTTPException):
        return f"Discord API error {exc.status}: {exc.text or exc}"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return f"cannot reach Discord at {discord.http.Route.BASE}: {type(exc).__name__}: {exc}"
    return f"Discord connection failed: {type(exc).__name__}: {exc}"


# outbox -----------------------------------------------------------------------------


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

    async def send(self, target: Sendable | _LinkedParent, text: str) -> list[discord.Message]:
        """Send `text` in parts of at most 2000 chars; the sign-off stays on the last part."""
        parts = split_markdown(text, MESSAGE_LIMIT) or [text]
        if isinstance(target, discord.Thread) and target.archived:
            target = await self._reopen(target)
        sent: list[discord.Message] = []
        for part in parts:
            try:
                sent.append(await target.send(part, allowed_mentions=NO_PINGS))
            except discord.HTTPException as exc:
                if exc.code != ARCHIVED_THREAD or not isinstance(target, discord.Thread):
                    raise
                target = await self._reopen(target)
                sent.append(await target.send(part, allowed_mentions=NO_PINGS))
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


class _LinkedParent:
    """Sends into a thread's parent channel, first pointing at the archived thread."""

    def __init__(self, parent: Sendable, thread: discord.Thread) -> None:
        self.parent = parent
        self.thread = thread
        self._linked = False

    async def send(
        self, content: str, *, allowed_mentions: discord.AllowedMentions
    ) -> discord.Message:
        """Send one part; the first carries a link to the thread it belongs to."""
        if not self._linked:
            self._linked = True
            note = f"(reply to {self.thread.jump_url}, which is archived)\n\n"
            if len(note) + len(content) <= MESSAGE_LIMIT:
                content = note + content
            else:
                await self.parent.send(note.strip(), allowed_mentions=allowed_mentions)
        return await self.parent.send(content, allowed_mentions=allowed_mentions)


# client -----------------------------------------------------------------------------


class ArchbotClient(discord.Client):
    """discord.py client wired to the core: dependencies passed in, async set-up in setup_hook."""

    def __init__(self, core: Core, *, api_url: str) -> None:
        # archbot never joins voice: skip discord.py's warnings about missing voice extras.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: switched on in the Developer Portal
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

    async def setup_hook(self) -> None:
        """Find the gateway through the configured API and sync the /archbot commands."""
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

    async def on_ready(self) -> None:
        """Log who we are once the gateway is up."""
        log.info("discord: logged in as %s (id %s)", self.user, self.user.id if self.user else "?")

    async def on_message(self, message: discord.Message) -> None:
        """Decide whether to answer; if so run one turn and post the reply."""
        if self.stopping or self.user is None or message.author.bot:
            return
        task = asyncio.current_task()
        if task is not None:
            self.inflight.add(task)
        try:
            await self._on_message(message)
        except Exception:
            log.exception("discord: handling message %s failed", message.id)
        finally:
            if task is not None:
                self.inflight.discard(task)

    async def _on_message(self, message: discord.Message) -> None:
        assert self.user is not None
        bot_id = self.user.id
        payload = payload_of(message)
        if is_from_bot(payload):
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
        mentioned = mentions_bot(payload, str(bot_id), role_id)
        msg = incoming_from_payload(payload, bot_id=str(bot_id), where=where, role_id=role_id)
        consultant = self.core.consultant
        target: Sendable
        if where.kind == "dm":
            assert isinstance(channel, discord.abc.Messageable)
            target = channel
        elif where.kind == "thread":
            assert isinstance(channel, discord.Thread)
            known = consultant.knows_thread(msg.thread_key)
            if not known and not mentioned:
                return
            if not known and consultant.allowed(msg):
                msg = replace(msg, prior_context=await self._thread_context(channel, message))
            target = channel
        else:
            if not mentioned or not consultant.allowed(msg):
                return
            if is_command(msg.text):
                # `@archbot !help` in a channel: answer in place, keyed like /archbot there.
                msg = replace(msg, thread=msg.channel)
                assert isinstance(channel, discord.abc.Messageable)
                target = channel
            else:
                target = await self._open_thread(message, msg.text)
        await self.answer(target, msg)

    async def answer(self, target: Sendable, msg: IncomingMessage) -> None:
        """One turn with the typing indicator on; the reply is posted in parts."""
        consultant = self.core.consultant
        async with target.typing():
            reply = await consultant.handle(msg)
            if reply is None:
                return
            try:
                await self.outbox.send(target, reply.text)
            except discord.HTTPException as exc:
                log.error(
                    "posting the reply to %s failed (%s %s); the answer stays stored",
                    msg.thread_key,
                    exc.status,
                    exc.text,
                )
                return
        consultant.mark_delivered(reply)

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
        consultant = self.core.consultant
        work = asyncio.ensure_future(consultant.handle(msg))
        done, _ = await asyncio.wait({work}, timeout=DEFER_AFTER)
        if not done:
            await interaction.response.defer(thinking=True)
        reply = await work
        body = reply.text if reply is not None else NOT_ALLOWED
        parts = split_markdown(body, MESSAGE_LIMIT) or [body]
        if interaction.response.is_done():
            for part in parts:
                await interaction.followup.send(part, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(parts[0], allowed_mentions=NO_PINGS)
            for part in parts[1:]:
                await interaction.followup.send(part, allowed_mentions=NO_PINGS)
        if reply is not None:
            consultant.mark_delivered(reply)


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


class ArchbotCommands(app_commands.Group):
    """`/archbot ...`: the core's !commands as Discord application commands."""

    todo = app_commands.Group(name="todo", description="Change this thread's todo list")

    def __init__(self, client: ArchbotClient) -> None:
        super().__init__(name="archbot", description="archbot, your ML systems architect")
        self.client = client

    @app_commands.command(name="help", description="What archbot can do")
    async def help(self, interaction: discord.Interaction[Any]) -> None:
        """`!help`."""
        await self.client.run_command(interaction, command_text("help"))

    @app_commands.command(name="todos", description="This thread's todo list")
    async def todos(self, interaction: discord.Interaction[Any]) -> None:
        """`!todos`."""
        await self.client.run_command(interaction, command_text("todos"))

    @todo.command(name="add", description="Add a todo to this thread")
    @app_commands.describe(text="What needs doing")
    async def todo_add(self, interaction: discord.Interaction[Any], text: str) -> None:
        """`!todo add TEXT`."""
        await self.client.run_command(interaction, command_text("todo", "add", text))

    @todo.command(name="done", description="Mark a todo as done")
    @app_commands.describe(number="The todo's number in /archbot todos")
    async def todo_done(
        self, interaction: discord.Interaction[Any], number: app_commands.Range[int, 1]
    ) -> None:
        """`!todo done N`."""
        await self.client.run_command(interaction, command_text("todo", "done", number))

    @app_commands.command(name="usage", description="Tokens and cost: thread, channel, per user")
    async def usage(self, interaction: discord.Interaction[Any]) -> None:
        """`!usage`."""
        await self.client.run_command(interaction, command_text("usage"))

    @app_commands.command(name="repo", description="Show or bind the GitHub repo for this channel")
    @app_commands.describe(repo="owner/name to bind (leave empty to show the current one)")
    async def repo(self, interaction: discord.Interaction[Any], repo: str | None = None) -> None:
        """`!repo [owner/name]`."""
        await self.client.run_command(interaction, command_text("repo", repo))

    @app_commands.command(name="checkin", description="This channel's check-ins, or post one now")
    @app_commands.describe(name="Check-in to post now (admins)")
    async def checkin(self, interaction: discord.Interaction[Any], name: str | None = None) -> None:
        """`!checkin [NAME]`."""
        await self.client.run_command(interaction, command_text("checkin", name))


# adapter ----------------------------------------------------------------------------


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
        ready = asyncio.create_task(self.client.wait_until_ready())
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
