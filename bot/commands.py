"""`!commands`: handled by the core without calling the model.

Register one with `@command("name", usage=..., summary=...)` on an async
function `(ctx: CommandContext, args: str) -> str`. Raise `CommandError` for
bad arguments: the user sees the message followed by the help text. A command
waits for the thread's running turn (it may change what that turn reads)
unless it is registered with `read_only=True`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.errors import CommandError
from bot.events import IncomingMessage, ReplyFile
from bot.store import day_start, week_start
from bot.tools.todos import TITLE_MAX_CHARS, todo_page

if TYPE_CHECKING:
    from bot.settings import Secrets, Settings
    from bot.store import Store, ThreadRow, UsageTotals
    from bot.tools import Services

log = logging.getLogger(__name__)

# Any command's reply fits one Slack message (12,000) and a few Discord messages
# (2,000 each): long output is paginated by its command, or else cut here with a note.
REPLY_MAX_CHARS = 6_000
# How much of a user's own word an error message quotes back.
ECHO_MAX_CHARS = 40


def echo(word: str) -> str:
    """A user's word as quoted back in a reply, cut short."""
    return word if len(word) <= ECHO_MAX_CHARS else word[: ECHO_MAX_CHARS - 1] + "…"


def cap_reply(text: str, max_chars: int = REPLY_MAX_CHARS) -> str:
    """`text` cut at the last line break within `max_chars`, with a note saying so."""
    if len(text) <= max_chars:
        return text
    note = f"\n[…cut at {max_chars:,} characters to fit in one message.]"
    head = text[: max_chars - len(note) - 4]
    if "\n" in head:
        head = head[: head.rindex("\n")]
    if sum(1 for line in head.splitlines() if line.lstrip().startswith("```")) % 2:
        head += "\n```"  # a cut inside a code block must not leave it open
    return head + note


@dataclass
class CommandContext:
    """What a command may touch."""

    store: Store
    settings: Settings
    secrets: Secrets
    msg: IncomingMessage
    thread: ThreadRow
    services: Services
    # Stops the thread's running turn (`Consultant.stop`); None where no turns run.
    stop: Callable[[str, str], bool] | None = None
    # Attached to the command's reply (a command returns only its text).
    files: list[ReplyFile] = field(default_factory=list)
    # Set when the command's effect answers for it: nothing is posted.
    silent: bool = False

    @property
    def is_admin(self) -> bool:
        """Admins may run check-ins and change bindings (everyone, when no admins are set)."""
        if self.msg.platform == "console":  # the local operator owns the machine
            return True
        return self.settings.access.is_admin(self.msg.user)


CommandFunction = Callable[[CommandContext, str], Awaitable[str]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    summary: str
    function: CommandFunction
    read_only: bool = False


class CommandRegistry:
    """Commands by name, in registration order (the order !help lists them)."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def command(
        self, name: str, *, usage: str, summary: str, read_only: bool = False
    ) -> Callable[[CommandFunction], CommandFunction]:
        """Register an async function as `!name` (decorator)."""

        def register(function: CommandFunction) -> CommandFunction:
            if name in self._commands:
                raise ValueError(f"command !{name} registered twice")
            self._commands[name] = Command(name, usage, summary, function, read_only)
            return function

        return register

    def is_read_only(self, text: str) -> bool:
        """True when the command in `text` changes nothing, so it need not wait for a turn."""
        name = text.strip()[1:].partition(" ")[0].lower().strip()
        cmd = self._commands.get(name)
        return cmd is None or cmd.read_only  # an unknown command only shows the help

    def help_text(self) -> str:
        """The list of commands shown by !help and after an unknown command."""
        lines = ["**Commands** (mention me, or use `/archbot <command>`):"]
        lines += [f"- `{c.usage}`: {c.summary}" for c in self._commands.values()]
        lines.append("Anything else is a question for the architect.")
        return "\n".join(lines)

    async def run(self, ctx: CommandContext, text: str) -> str:
        """Run the command in `text` (which starts with `!`) and return the reply body."""
        name, _, args = text.strip()[1:].partition(" ")
        name = name.lower().strip()
        cmd = self._commands.get(name)
        if cmd is None:
            shown = f"`!{echo(name)}`" if name else "an empty command"
            return cap_reply(f"Unknown command {shown}.\n\n{self.help_text()}")
        try:
            return cap_reply(await cmd.function(ctx, args.strip()))
        except CommandError as exc:
            return cap_reply(f"{exc}\n\nUsage: `{cmd.usage}`")


def is_command(text: str) -> bool:
    """True when the message (mention already stripped) is a !command."""
    return text.lstrip().startswith("!")


registry = CommandRegistry()
command = registry.command


@command("help", usage="!help", summary="this list", read_only=True)
async def help_command(ctx: CommandContext, args: str) -> str:
    """Show the commands."""
    return registry.help_text()


@command(
    "todos",
    usage="!todos [all] [PAGE]",
    summary="this thread's todo list (a long one: open first, by page; `all` adds done ones)",
    read_only=True,
)
async def todos_command(ctx: CommandContext, args: str) -> str:
    """List the thread's todos, a page at a time when the list is long."""
    show_all, page = False, 1
    for word in args.lower().split():
        if word == "all":
            show_all = True
        elif word.isascii() and word.isdigit() and int(word) >= 1:
            page = int(word)
        else:
            raise CommandError(f"`{echo(word)}` is neither `all` nor a page number.")
    try:
        return todo_page(ctx.store.list_todos(ctx.thread.id), page, show_all=show_all)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _todo_number(word: str) -> int:
    try:
        number = int(word.lstrip("#"))
    except ValueError:
        raise CommandError(f"`{echo(word)}` is not a todo number.") from None
    if number < 1:
        raise CommandError("Todo numbers start at 1.")
    return number


@command(
    "todo",
    usage="!todo add TEXT | !todo done N | !todo drop N",
    summary="add a todo, or mark one done or dropped",
)
async def todo_command(ctx: CommandContext, args: str) -> str:
    """Add, complete or drop a todo."""
    action, _, rest = args.partition(" ")
    action = action.lower()
    rest = rest.strip()
    if action == "add":
        if not rest:
            raise CommandError("Say what to add: `!todo add TEXT`.")
        title = " ".join(rest.split())
        cut = ""
        if len(title) > TITLE_MAX_CHARS:
            title = title[: TITLE_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"
            cut = f"\n(The title was cut to {TITLE_MAX_CHARS} characters: a todo is one line.)"
        todo = ctx.store.add_todo(ctx.thread.id, title, created_by=ctx.msg.user)
        return f"Added todo {todo.number}: {todo.title}{cut}"
    if action in {"done", "drop"}:
        if not rest:
            raise CommandError(f"Say which todo: `!todo {action} N`.")
        number = _todo_number(rest.split()[0])
        status = "done" if action == "done" else "dropped"
        try:
            todo = ctx.store.update_todo(ctx.thread.id, number, status=status)
        except KeyError:
            raise CommandError(
                f"There is no todo {number} in this thread (see `!todos`)."
            ) from None
        return f"Todo {todo.number} is now {todo.status}: {todo.title}"
    raise CommandError("`!todo` takes `add`, `done` or `drop`.")


@command(
    "stop",
    usage="!stop",
    summary="stop the answer being written in this thread",
    read_only=True,  # it must not wait for the very turn it stops
)
async def stop_command(ctx: CommandContext, args: str) -> str:
    """Stop this thread's running turn; it answers "Stopped." itself."""
    if ctx.stop is not None and ctx.stop(ctx.thread.key, ctx.msg.user):
        ctx.silent = True
        return ""
    return "Nothing is being written in this thread right now."


@command("forget", usage="!forget", summary="clear this thread's memory (todos stay)")
async def forget_command(ctx: CommandContext, args: str) -> str:
    """Forget the thread's conversation, keep its todos."""
    removed = ctx.store.forget(ctx.thread.id)
    return (
        f"Forgotten: {removed} stored message{'s' if removed != 1 else ''} of this thread. "
        "Todos are kept; the next question starts a fresh conversation."
    )


USAGE_MAX_USERS = 10


def _fmt_totals(label: str, t: UsageTotals) -> str:
    return (
        f"| {label} | {t.calls} | {t.input_tokens:,} | {t.output_tokens:,} | "
        f"{t.cache_read_tokens:,} | {t.cache_write_tokens:,} | ${t.cost_usd:.4f} |"
    )


@command(
    "usage",
    usage="!usage",
    summary="tokens and estimated cost: thread, channel, per user",
    read_only=True,
)
async def usage_command(ctx: CommandContext, args: str) -> str:
    """Show token use and estimated cost."""
    store = ctx.store
    today, week = day_start(), week_start()
    rows = [
        "| scope | calls | input | output | cache read | cache write | est. cost |",
        "|---|---:|---:|---:|---:|---:|---:|",
        _fmt_totals("this thread", store.usage_for_thread(ctx.thread.id)),
        _fmt_totals("channel today", store.usage_for_channel(ctx.thread.channel_key, today)),
        _fmt_totals("channel this week", store.usage_for_channel(ctx.thread.channel_key, week)),
    ]
    users = store.usage_by_user(ctx.thread.channel_key, week)
    for user, totals in users[:USAGE_MAX_USERS]:
        rows.append(_fmt_totals(f"{echo(user) or 'system'} (week)", totals))
    if len(users) > USAGE_MAX_USERS:
        more = len(users) - USAGE_MAX_USERS
        rows.append(f"| …and {more:,} more user{'s' if more != 1 else ''} this week | | | | | | |")
    budget = ctx.settings.llm.daily_token_budget_per_user
    note = ""
    if budget:
        used = store.tokens_used_since(ctx.msg.user, today)
        note = f"\n\nYour tokens today: {used:,} of {budget:,}."
    return "**Usage** (costs are estimates from the price table)\n\n" + "\n".join(rows) + note
