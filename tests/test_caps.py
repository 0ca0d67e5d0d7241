"""Outputs are capped everywhere: list_todos for the model, titles at add time, command replies."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import Core
from bot.commands import REPLY_MAX_CHARS, cap_reply, registry
from bot.formatting import split_markdown
from bot.settings import Secrets, Settings, StorageSettings
from bot.store import Store, Todo, UsageRecord
from bot.tools import ToolContext
from bot.tools.todos import (
    LIST_MAX_CHARS,
    PAGE_MAX_CHARS,
    TITLE_MAX_CHARS,
    capped_todo_list,
    format_todos,
    todo_page,
)
from bot.toolset import tools
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg

SLACK_MESSAGE_LIMIT = 12_000
DISCORD_MESSAGE_LIMIT = 2_000


def many(n: int, *, every_done: int = 0, title_len: int = 290) -> list[Todo]:
    """`n` todos with long titles; with `every_done`, only every `every_done`-th one is open."""
    out = []
    for i in range(1, n + 1):
        status = "done" if every_done and i % every_done else "open"
        title = f"Todo {i} " + "x" * (title_len - len(f"Todo {i} "))
        out.append(Todo(i, title, status))
    return out


def numbers(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"^(\d+)\. \[", text, flags=re.M)]


# -- list_todos for the model (pure) ----------------------------------------------------


def test_a_short_list_is_unchanged() -> None:
    todos = many(5, every_done=2)
    assert capped_todo_list(todos) == format_todos(todos)


def test_a_thousand_todos_fit_the_cap_open_first_with_a_note() -> None:
    todos = many(1000, every_done=10)  # 100 open, 900 done
    text = capped_todo_list(todos)
    assert len(text) <= LIST_MAX_CHARS
    shown = numbers(text)
    assert shown == sorted(shown)
    open_numbers = [t.number for t in todos if t.status == "open"]
    assert set(shown) < {t.number for t in todos}
    # Open ones come before any done one: if a done one is shown, every open one is.
    assert set(shown) & set(open_numbers) == set(
        open_numbers[: len(set(shown) & set(open_numbers))]
    )
    hidden = len(todos) - len(shown)
    assert f"Showing {len(shown):,} of 1,000 todos" in text
    assert "`!todos all`" in text and "update_todo" in text
    hidden_done = sum(1 for t in todos if t.status == "done" and t.number not in shown)
    hidden_open = sum(1 for t in todos if t.status == "open" and t.number not in shown)
    assert hidden == hidden_done + hidden_open
    if hidden_open:
        assert f"{hidden_open:,} open" in text
    assert f"{hidden_done:,} done" in text


def test_after_the_open_ones_the_most_recent_closed_ones_are_shown() -> None:
    todos = [Todo(i, "y" * 280, "done") for i in range(1, 500)] + [Todo(500, "open one", "open")]
    shown = numbers(capped_todo_list(todos))
    assert 500 in shown and 499 in shown and 1 not in shown
    assert shown == list(range(500 - len(shown) + 1, 501))


def test_in_progress_comes_before_open() -> None:
    todos = [Todo(i, "z" * 280, "open") for i in range(1, 200)] + [
        Todo(200, "the one we are on", "in_progress")
    ]
    text = capped_todo_list(todos)
    assert 200 in numbers(text) and "[~] = in progress" in text


# -- !todos pages (pure) ----------------------------------------------------------------


def test_a_short_list_is_one_page_without_a_footer() -> None:
    todos = many(3, title_len=40)
    assert todo_page(todos) == format_todos(todos)
    with pytest.raises(ValueError, match="one page"):
        todo_page(todos, 2)


def test_pages_cover_every_open_todo_once_and_fit_a_message() -> None:
    todos = many(1000, every_done=10)
    first = todo_page(todos)
    assert "Page 1 of " in first and "900 done or dropped hidden" in first
    total = int(re.search(r"Page 1 of (\d+)", first).group(1))  # type: ignore[union-attr]
    seen: list[int] = []
    for page in range(1, total + 1):
        text = todo_page(todos, page)
        assert len(text) <= PAGE_MAX_CHARS + 300
        seen += numbers(text)
        if page < total:
            assert f"Next: `!todos {page + 1}`" in text
        else:
            assert "Next" not in text
    assert seen == [t.number for t in todos if t.status == "open"]
    with pytest.raises(ValueError, match=f"`!todos {total}` is the last"):
        todo_page(todos, total + 1)


def test_all_pages_include_done_ones() -> None:
    todos = many(1000, every_done=10)
    seen: list[int] = []
    page = 1
    while True:
        text = todo_page(todos, page, show_all=True)
        seen += numbers(text)
        if "Next: `!todos all" not in text:
            break
        page += 1
    assert seen == list(range(1, 1001))


def test_no_open_todos_points_at_all() -> None:
    todos = [Todo(i, "w" * 280, "done") for i in range(1, 100)]
    assert "`!todos all`" in todo_page(todos)


# -- the reply cap (pure) ---------------------------------------------------------------


def test_cap_reply_cuts_at_a_line_break_and_closes_a_code_block() -> None:
    assert cap_reply("short") == "short"
    text = "intro\n```python\n" + "\n".join(f"line_{i} = {i}" for i in range(2000)) + "\n```\n"
    out = cap_reply(text)
    assert len(out) <= REPLY_MAX_CHARS
    assert "cut at 6,000 characters" in out
    body = out.rsplit("\n[", 1)[0]
    assert body.count("```") % 2 == 0 and body.endswith("```")
    assert all(line.startswith(("line_", "```", "intro")) for line in body.splitlines())


# -- through the tool registry and the command registry, on a real store ---------------


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ToolContext]:
    settings = Settings(storage=StorageSettings(path=str(tmp_path / "a.db")))
    store = Store.open(settings.storage.path)
    thread = store.ensure_thread(
        "slack/T1/C1/1.0",
        platform="slack",
        workspace="T1",
        channel="C1",
        thread="1.0",
        channel_key="slack/T1/C1",
    )
    try:
        yield ToolContext(
            store=store, settings=settings, secrets=Secrets(), thread=thread, user="U1"
        )
    finally:
        store.close()


async def test_list_todos_tool_with_a_thousand_todos_stays_under_the_cap(ctx: ToolContext) -> None:
    for i in range(1, 1001):
        text, is_error = await tools.call("add_todo", {"title": f"{i} " + "t" * 295}, ctx)
        assert not is_error, text
    for i in range(1, 1001, 3):
        ctx.store.update_todo(ctx.thread.id, i, status="done")
    text, is_error = await tools.call("list_todos", {}, ctx)
    assert not is_error
    assert len(text) <= LIST_MAX_CHARS
    assert "Showing" in text and "of 1,000 todos" in text


async def test_add_todo_tool_refuses_a_title_over_the_cap(ctx: ToolContext) -> None:
    text, is_error = await tools.call("add_todo", {"title": "a" * (TITLE_MAX_CHARS + 1)}, ctx)
    assert is_error and "title" in text and str(TITLE_MAX_CHARS) in text
    assert ctx.store.list_todos(ctx.thread.id) == []
    text, is_error = await tools.call("add_todo", {"title": "a" * TITLE_MAX_CHARS}, ctx)
    assert not is_error and text.startswith("Added todo 1:")


async def test_a_long_todo_from_a_command_is_cut_with_a_note(core: Core) -> None:
    reply = await core.consultant.handle(msg("!todo add " + "word " * 200, thread="long"))
    assert reply is not None
    assert f"cut to {TITLE_MAX_CHARS} characters" in reply.text
    thread = core.store.ensure_thread_for(msg("x", thread="long"))
    (todo,) = core.store.list_todos(thread.id)
    assert len(todo.title) <= TITLE_MAX_CHARS and todo.title.endswith("word…")


def fits(text: str) -> None:
    assert len(text) <= SLACK_MESSAGE_LIMIT
    assert len(split_markdown(text, DISCORD_MESSAGE_LIMIT)) <= 4


async def test_every_command_reply_fits_one_slack_message_with_a_thousand_todos(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    thread = core.store.ensure_thread_for(msg("x", thread="big"))
    for i in range(1, 1001):
        core.store.add_todo(thread.id, f"Todo {i} " + "q" * 290)
        if i % 4:
            core.store.update_todo(thread.id, i, status="done")
    for u in range(30):
        core.store.record_usage(
            UsageRecord(
                model="m",
                purpose="answer",
                input_tokens=10,
                output_tokens=5,
                cache_read_tokens=0,
                cache_write_tokens=0,
                latency_ms=1,
                cost_usd=0.01 * u,
            ),
            thread_id=thread.id,
            channel_key=thread.channel_key,
            user=f"U{u:04d}" + "n" * 100,
        )
    replies = {}
    for n, text in enumerate(
        ["!todos", "!todos 2", "!todos all", "!todos all 7", "!usage", "!help", "!" + "h" * 9000]
    ):
        reply = await core.consultant.handle(msg(text, thread="big", event_id=f"caps-{n}"))
        assert reply is not None
        fits(reply.text)
        replies[text] = reply.text
    assert (
        "Next: `!todos 2`" in replies["!todos"]
        and "750 done or dropped hidden" in replies["!todos"]
    )
    assert "…and 20 more users this week" in replies["!usage"]
    assert "Unknown command" in replies["!" + "h" * 9000]
    for bad in ("!todos ²", "!todos 0", "!todos everything"):
        reply = await core.consultant.handle(msg(bad, thread="big", event_id=f"bad-{bad}"))
        assert reply is not None and "neither `all` nor a page number" in reply.text
    late = await core.consultant.handle(msg("!todos 99", thread="big", event_id="late"))
    assert late is not None and "is the last" in late.text
    assert fake_anthropic.message_requests == []  # commands never call the model


def test_the_registry_caps_a_command_that_forgets_to_paginate() -> None:
    assert all(len(cap_reply("x\n" * n)) <= REPLY_MAX_CHARS for n in (10, 3000, 10_000))
    assert "!todos [all] [PAGE]" in registry.help_text()
