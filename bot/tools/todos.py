"""Todo tools: the thread's shared list for multi-phase design work."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from bot.errors import ToolError
from bot.store import Todo
from bot.tools import ToolContext, tool

STATUS_MARK = {"open": "[ ]", "in_progress": "[~]", "done": "[x]", "dropped": "[-]"}
LEGEND = "([~] = in progress, [x] = done, [-] = dropped)"
OPEN_STATUSES = ("open", "in_progress")

# A title is one line of a checklist, not a document: 1,000 of them must still list.
TITLE_MAX_CHARS = 300
# What list_todos returns at most, like the other tools' caps (fetch_url, read_file).
LIST_MAX_CHARS = 20_000
# One page of `!todos`: with the sign-off it stays within one Slack message (12,000)
# and two Discord messages (2,000 each, split at line breaks).
PAGE_MAX_CHARS = 3_000


def todo_line(todo: Todo) -> str:
    """One checklist line; a title longer than the cap (stored before it existed) is cut."""
    title = todo.title
    if len(title) > TITLE_MAX_CHARS:
        title = title[: TITLE_MAX_CHARS - 1] + "…"
    return f"{todo.number}. {STATUS_MARK.get(todo.status, '[ ]')} {title}"


def format_todos(todos: list[Todo]) -> str:
    """Todos as a numbered checklist; the same text for the model and for people."""
    if not todos:
        return "No todos in this thread yet."
    lines = [todo_line(t) for t in todos]
    if any(t.status == "in_progress" for t in todos):
        lines.append(LEGEND)
    return "\n".join(lines)


def _count(todos: list[Todo], status: str) -> int:
    return sum(1 for t in todos if t.status == status)


def _not_shown(hidden: list[Todo]) -> str:
    parts = [
        f"{n:,} {label}"
        for label, n in (
            ("open", _count(hidden, "open")),
            ("in progress", _count(hidden, "in_progress")),
            ("done", _count(hidden, "done")),
            ("dropped", _count(hidden, "dropped")),
        )
        if n
    ]
    return ", ".join(parts)


def capped_todo_list(todos: list[Todo], max_chars: int = LIST_MAX_CHARS) -> str:
    """The checklist for the model, at most `max_chars`: open work first, then the newest closed."""
    full = format_todos(todos)
    if len(full) <= max_chars:
        return full
    # Room for the legend and the note that says what is missing.
    budget = max_chars - 600
    wanted = sorted(
        todos,
        key=lambda t: (
            0 if t.status == "in_progress" else 1 if t.status == "open" else 2,
            t.number if t.status in OPEN_STATUSES else -t.number,
        ),
    )
    shown: list[Todo] = []
    used = 0
    for todo in wanted:
        cost = len(todo_line(todo)) + 1
        if used + cost > budget:
            break
        shown.append(todo)
        used += cost
    shown_numbers = {t.number for t in shown}
    hidden = [t for t in todos if t.number not in shown_numbers]
    body = format_todos(sorted(shown, key=lambda t: t.number)) if shown else ""
    note = (
        f"[Showing {len(shown):,} of {len(todos):,} todos (list_todos returns at most "
        f"{max_chars:,} characters): in-progress and open ones first, then the most recent "
        f"done or dropped. Not shown: {_not_shown(hidden)}. update_todo works on any number; "
        "people can page through every todo with `!todos all`.]"
    )
    return f"{body}\n{note}" if body else note


def todo_page(todos: list[Todo], page: int = 1, *, show_all: bool = False) -> str:
    """One page of `!todos`; done and dropped are hidden (unless `show_all`) once the list is long.

    Raises ValueError when the page does not exist.
    """
    full = format_todos(todos)
    if len(full) <= PAGE_MAX_CHARS:
        if page != 1:
            raise ValueError("The list fits on one page: `!todos`.")
        return full
    selected = todos if show_all else [t for t in todos if t.status in OPEN_STATUSES]
    hidden = len(todos) - len(selected)
    if not selected:
        return f"No open todos in this thread; {hidden:,} done or dropped: `!todos all` lists them."
    pages: list[list[Todo]] = [[]]
    used = 0
    for todo in selected:
        cost = len(todo_line(todo)) + 1
        if pages[-1] and used + cost > PAGE_MAX_CHARS:
            pages.append([])
            used = 0
        pages[-1].append(todo)
        used += cost
    command = "!todos all" if show_all else "!todos"
    if not 1 <= page <= len(pages):
        raise ValueError(
            f"There {'is' if len(pages) == 1 else 'are'} {len(pages)} "
            f"page{'s' if len(pages) != 1 else ''}: `{command} {len(pages)}` is the last."
        )
    footer = f"Page {page} of {len(pages)}"
    if not show_all and hidden:
        footer += f" (open and in progress; {hidden:,} done or dropped hidden: `!todos all`)"
    if page < len(pages):
        footer += f". Next: `{command} {page + 1}`"
    return f"{format_todos(pages[page - 1])}\n\n{footer}."


@tool
async def list_todos(ctx: ToolContext) -> str:
    """List this thread's todos with their numbers and status ([ ] open, [~] in progress, [x] done, [-] dropped).

    Call this before planning the next phase of multi-phase design work, or when
    the user asks what is left to do. A long list is cut at 20,000 characters:
    open and in-progress todos come first, and a note says what was left out.
    """
    return capped_todo_list(ctx.store.list_todos(ctx.thread.id))


@tool
async def add_todo(
    ctx: ToolContext,
    title: Annotated[
        str,
        Field(
            min_length=1,
            max_length=TITLE_MAX_CHARS,
            description="A short imperative title (at most 300 characters), e.g. 'Benchmark Polars vs Pandas on one day of ticks'.",
        ),
    ],
) -> str:
    """Add a todo to this thread's shared list and get its number back.

    Use it for concrete follow-ups the team agreed on during multi-phase design
    work (decisions to validate, measurements to take, phases to plan). Do not
    add vague or duplicate items: check list_todos first when unsure.
    """
    try:
        todo = ctx.store.add_todo(ctx.thread.id, title, created_by=ctx.user)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    return f"Added todo {todo.number}: {todo.title}"


@tool
async def update_todo(
    ctx: ToolContext,
    number: Annotated[int, Field(ge=1, description="The todo's number as shown by list_todos.")],
    status: Annotated[
        Literal["open", "in_progress", "done", "dropped"],
        Field(description="The new status."),
    ],
    title: Annotated[
        str | None,
        Field(max_length=TITLE_MAX_CHARS, description="A corrected title, only if it changes."),
    ] = None,
) -> str:
    """Change the status (and optionally the title) of one of this thread's todos.

    Mark an item in_progress when the discussion starts on it, done when the
    team has settled it, dropped when it no longer applies.
    """
    try:
        todo = ctx.store.update_todo(ctx.thread.id, number, status=status, title=title)
    except KeyError:
        raise ToolError(f"There is no todo {number} in this thread; call list_todos.") from None
    return f"Todo {todo.number} is now {todo.status}: {todo.title}"
