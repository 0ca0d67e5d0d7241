"""What a turn writes, and in how many commits: the question in one, the answer with the last
call's ledger row in the next; a tool round's ledger row before its tools run. Nothing billed
goes unrecorded, streamed or not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.app import Core
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg


def _ledger(path: Path) -> list[tuple[int | None, str]]:
    """(turn id, purpose) of every usage row, as another connection reads the file."""
    conn = sqlite3.connect(path)
    try:
        return [
            (r[0], r[1]) for r in conn.execute("SELECT turn_id, purpose FROM usage ORDER BY id")
        ]
    finally:
        conn.close()


async def test_an_answered_turn_commits_twice_and_its_ledger_row_with_the_answer(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("Start with a managed Kafka.")
    statements: list[str] = []
    core.store.conn.set_trace_callback(statements.append)
    reply = await core.consultant.handle(msg("Kafka or Redis Streams?", thread="two"))
    core.store.conn.set_trace_callback(None)
    assert reply is not None and reply.kind == "answer"
    commits = [i for i, s in enumerate(statements) if s == "COMMIT"]
    assert len(commits) == 2
    begin = max(i for i, s in enumerate(statements[: commits[1]]) if s.startswith("BEGIN"))
    last = statements[begin : commits[1]]
    # No statement writes on its own (autocommit) between the two transactions.
    between = statements[commits[0] + 1 : begin]
    assert not [s for s in between if s.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert [s.split(" (")[0] for s in last if s.startswith("INSERT")] == [
        "INSERT INTO usage",
        "INSERT INTO messages",
    ]
    assert not any(s.startswith("INSERT") for s in statements[commits[1] + 1 :])
    assert _ledger(Path(core.settings.storage.path)) == [(reply.turn_id, "chat")]


async def test_a_tool_round_s_usage_is_stored_before_its_tools_run(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    path = Path(core.settings.storage.path)
    fake_anthropic.reply_tool_use("list_todos", {})
    fake_anthropic.reply_text("Nothing open yet.")
    ledger_when_the_tool_ran: list[list[tuple[int | None, str]]] = []
    tool = core.consultant.tools.get("list_todos")
    assert tool is not None
    original = tool.function

    async def watched(ctx, **kwargs):  # type: ignore[no-untyped-def]
        ledger_when_the_tool_ran.append(_ledger(path))
        return await original(ctx, **kwargs)

    object.__setattr__(tool, "function", watched)
    try:
        reply = await core.consultant.handle(msg("What is open?", thread="tools"))
    finally:
        object.__setattr__(tool, "function", original)
    assert reply is not None and reply.kind == "answer"
    assert ledger_when_the_tool_ran == [[(reply.turn_id, "chat")]]
    assert _ledger(path) == [(reply.turn_id, "chat"), (reply.turn_id, "chat")]


async def test_a_streamed_answer_s_call_is_in_the_ledger(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("Streamed: start with a managed Kafka.")
    shown: list[str] = []

    async def on_text(text: str) -> None:
        shown.append(text)

    reply = await core.consultant.handle(msg("Kafka?", thread="stream"), on_text=on_text)
    assert reply is not None and reply.kind == "answer" and shown
    assert _ledger(Path(core.settings.storage.path)) == [(reply.turn_id, "chat")]
