"""Todo tools: the thread's shared list for multi-phase design work."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from bot.errors import ToolError
from bot.store import Todo
from bot.tools import ToolContext, tool

STATUS_MARK = {"open": "[ ]", "in_progress": "[~]", "done": "[x]", "dropped": "[-]"}


def format_todos(todos: list[Todo]) -> str:
    """Todos as a numbered checklist; the same text for the model and for people."""
    if not todos:
        return "No todos in this thread yet."
    lines = [f"{t.number}. {STATUS_MARK.get(t.status, '[ ]')} {t.title}" for t in todos]
    if any(t.status == "in_progress" for t in todos):
        lines.append("([~] = in progress, [x] = done, [-] = dropped)")
    return "\n".join(lines)


@tool
async def list_todos(ctx: ToolContext) -> str:
    """List this thread's todos with their numbers and status ([ ] open, [~] in progress, [x] done, [-] dropped).

    Call this before planning the next phase of multi-phase design work, or when
    the user asks what is left to do.
    """
    return format_todos(ctx.store.list_todos(ctx.thread.id))


@tool
async def add_todo(
    ctx: ToolContext,
    title: Annotated[
        str,
        Field(
            min_length=1,
            max_length=300,
            description="A short imperative title, e.g. 'Benchmark Polars vs Pandas on one day of ticks'.",
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
        str | None, Field(max_length=300, description="A corrected title, only if it changes.")
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
