"""The one event type adapters produce and the reply the core gives back.

Adapters translate platform payloads into `IncomingMessage` with pure
functions and render `Reply` back; the core never sees a platform payload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# Receives the answer's text as the model writes it (see bot.streaming.ReplyStream).
TextSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ContextMessage:
    """An earlier message of a platform thread, read once when the bot joins it."""

    user: str
    text: str
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on a message, named to the model (the bot never downloads it)."""

    name: str
    mimetype: str = ""
    size: int | None = None  # bytes, when the platform says


@dataclass(frozen=True, slots=True)
class ForwardedMessage:
    """Words a message carries outside its own text: a Slack share/forward, a Discord forward."""

    text: str
    author: str = ""  # display name or id of the original author, when known
    source: str = ""  # e.g. a permalink or channel name, when known


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message addressed to the bot, already stripped of the bot's mention.

    `thread` is the platform's thread identity: Slack `thread_ts or ts`, the
    Discord thread channel id, the DM channel id, or the console thread name.
    `event_id` is unique per platform delivery (Slack event_id, Discord
    message id); a second message with the same event_id is a redelivery.
    `prior_context` carries a thread's earlier messages when the bot is
    mentioned inside a thread it has not seen before. `forwarded` and
    `attachments` carry what the message holds besides its own text;
    `mentioned` says the bot was addressed by name (so a bare mention, with
    no text at all, is still a request).
    """

    platform: str
    workspace: str
    channel: str
    thread: str
    user: str
    text: str
    event_id: str
    user_name: str = ""
    is_dm: bool = False
    prior_context: tuple[ContextMessage, ...] = field(default_factory=tuple)
    forwarded: tuple[ForwardedMessage, ...] = field(default_factory=tuple)
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)
    mentioned: bool = False

    @property
    def has_content(self) -> bool:
        """True when there is anything to read: text, forwarded words or a file."""
        return bool(self.text.strip() or self.forwarded or self.attachments)

    @property
    def thread_key(self) -> str:
        """The stable key of this conversation's memory."""
        return thread_key(self.platform, self.workspace, self.channel, self.thread)

    @property
    def channel_key(self) -> str:
        """The stable key of the channel (bindings, usage per channel)."""
        return f"{self.platform}/{self.workspace}/{self.channel}"


def thread_key(platform: str, workspace: str, channel: str, thread: str) -> str:
    """Build the thread key used in the database: `platform/workspace/channel/thread`."""
    if platform == "console":
        return f"console/{thread}"
    return f"{platform}/{workspace}/{channel}/{thread}"


@dataclass(frozen=True, slots=True)
class ReplyFile:
    """A file the core attaches to a reply (e.g. an ADR as Markdown); adapters upload it."""

    name: str
    content: bytes
    mimetype: str = "text/markdown"


@dataclass(frozen=True, slots=True)
class Reply:
    """What the core answers: Markdown text that already ends with the sign-off.

    `kind` is "answer" (the model wrote it), "command" (a !command),
    "error" (the model was unavailable; the message was kept), "notice", or
    "stopped" (the turn was stopped: "Stopped.").
    `files` are attached after the text (a Slack upload, a Discord attachment).
    """

    text: str
    thread_key: str
    kind: str = "answer"
    turn_id: int | None = None
    files: tuple[ReplyFile, ...] = ()

    @property
    def takes_feedback(self) -> bool:
        """True for a model's answer: its last message carries the 👍 / 👎 buttons."""
        return self.kind == "answer" and self.turn_id is not None
