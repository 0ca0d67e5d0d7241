"""`!summary` and `!adr` through the production-wired core and the real SDK against the fake model."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from bot.app import Core, build_core
from bot.decisions.records import DecisionFields, export_records, set_link, slugify
from bot.events import IncomingMessage, Reply
from bot.signoff import ends_with_sign_off_once
from tests.conftest import make_secrets, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic

_ids = itertools.count(1)

STORAGE_DECISION = {
    "has_decision": True,
    "title": "Store ticks as Parquet on S3, partitioned by day",
    "status": "accepted",
    "context": "2 TB of ticks a month; research reads whole days; the team runs no database.",
    "options": [
        {
            "name": "Parquet on S3",
            "pros": ["cheap at 2 TB a month", "columnar scans for research"],
            "cons": ["no point lookups"],
        },
        {"name": "TimescaleDB", "pros": ["SQL and point lookups"], "cons": ["a database to run"]},
    ],
    "decision": "Parquet on S3, one file per symbol and day, read with DuckDB.",
    "consequences": ["research reads are fast", "live lookups need a cache"],
    "follow_ups": ["write the compaction job"],
}


def msg(text: str, *, thread: str = "t1", channel: str = "C1") -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T1",
        channel=channel,
        thread=thread,
        user="U1",
        user_name="Alice",
        text=text,
        event_id=f"ev-{next(_ids)}",
    )


async def ask(core: Core, text: str, **where: str) -> Reply:
    reply = await core.consultant.handle(msg(text, **where))
    assert reply is not None
    return reply


async def discussed(core: Core, fake: FakeAnthropic, thread: str = "t1") -> None:
    """A thread where the team weighed storage options and chose one."""
    fake.reply_text("Parquet on S3 or TimescaleDB: at 2 TB a month Parquet is cheaper.")
    await ask(core, "Where should we store 2 TB of ticks a month?", thread=thread)
    fake.reply_text("Agreed: Parquet on S3, partitioned by day. Open: how to serve live lookups.")
    await ask(core, "Let's go with Parquet on S3 then.", thread=thread)


def purposes(core: Core) -> list[str]:
    return [r[0] for r in core.store.conn.execute("SELECT purpose FROM usage ORDER BY id")]


async def test_summary_is_one_model_call_over_the_history_with_the_real_todos(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    await discussed(core, fake_anthropic)
    await ask(core, "!todo add benchmark DuckDB on one day of ticks")
    fake_anthropic.reply_text(
        "### Decisions\n- Parquet on S3, by day.\n\n### Open questions\n- Live lookups?"
    )
    before = len(fake_anthropic.message_requests)
    reply = await ask(core, "!summary")
    assert len(fake_anthropic.message_requests) == before + 1
    request = fake_anthropic.message_requests[-1].body
    assert "Decisions" in request["system"][0]["text"]
    assert "tools" not in request
    transcript = request["messages"][0]["content"][0]["text"]
    assert "2 TB of ticks" in transcript and "Parquet on S3, partitioned by day" in transcript
    assert "### Decisions" in reply.text and "Live lookups?" in reply.text
    assert "benchmark DuckDB on one day of ticks" in reply.text.split("### Todos")[1]
    assert ends_with_sign_off_once(reply.text)
    assert purposes(core)[-1] == "summary"


async def test_summary_offline_lists_the_todos_and_says_it_needs_the_model(
    tmp_path: Path,
) -> None:
    core = build_core(make_settings(tmp_path), make_secrets(None, key=None))
    try:
        await ask(core, "We keep ticks in Parquet?")  # stored, though the model is away
        await ask(core, "!todo add pick a partition key")
        reply = await ask(core, "!summary")
    finally:
        await core.aclose()
    assert "pick a partition key" in reply.text
    assert "needs the model" in reply.text


async def test_adr_writes_numbers_stores_and_attaches_the_record(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    await discussed(core, fake_anthropic)
    fake_anthropic.reply_tool_use("record_decision", STORAGE_DECISION)
    reply = await ask(core, "!adr")
    request = fake_anthropic.message_requests[-1].body
    assert request["tool_choice"] == {"type": "tool", "name": "record_decision"}
    assert [t["name"] for t in request["tools"]] == ["record_decision"]
    assert purposes(core)[-1] == "adr"
    [file] = reply.files
    assert file.name == "0001-store-ticks-as-parquet-on-s3-partitioned-by-day.md"
    text = file.content.decode()
    assert text.startswith("# 1. Store ticks as Parquet on S3, partitioned by day\n")
    for heading in ("## Status", "## Context", "## Options considered", "## Decision"):
        assert heading in text
    assert "### TimescaleDB" in text and "- Bad: a database to run" in text
    assert "## Consequences" in text and "## Follow-ups\n\n- write the compaction job" in text
    assert text in reply.text  # posted in the thread too
    # A second record in another channel of the same workspace is 0002.
    await discussed(core, fake_anthropic, thread="t2")
    fake_anthropic.reply_tool_use("record_decision", {**STORAGE_DECISION, "title": "Use DuckDB"})
    second = await ask(core, "!adr", thread="t2")
    assert second.files[0].name == "0002-use-duckdb.md"
    listed = await ask(core, "!adr list")
    assert (
        "| 0001 | Store ticks as Parquet on S3" in listed.text
        and "| 0002 | Use DuckDB" in listed.text
    )
    shown = await ask(core, "!adr 1")
    assert shown.files[0].content == file.content
    missing = await ask(core, "!adr 9")
    assert "no decision record 0009" in missing.text


async def test_adr_without_a_decision_says_so_and_records_nothing(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("It depends on your read pattern: what do you query?")
    await ask(core, "Where should we store ticks?")
    fake_anthropic.reply_tool_use(
        "record_decision", {"has_decision": False, "reason": "The read pattern is still open."}
    )
    reply = await ask(core, "!adr")
    assert "not reached a decision" in reply.text and "read pattern is still open" in reply.text
    assert reply.files == ()
    listed = await ask(core, "!adr list")
    assert "No decision records" in listed.text
    # A record with has_decision true but no decision text is no record either.
    fake_anthropic.reply_tool_use("record_decision", {"has_decision": True, "title": "X"})
    assert (await ask(core, "!adr")).files == ()


async def test_adr_on_an_empty_thread_calls_no_model(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    reply = await ask(core, "!adr", thread="empty")
    assert "nothing in this thread" in reply.text
    assert fake_anthropic.message_requests == []


async def test_other_commands_never_call_the_model(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    for text in ("!help", "!todos", "!adr list", "!adr 1", "!usage", "!adr nonsense"):
        await ask(core, text)
    assert fake_anthropic.message_requests == []


def test_slugs_are_ascii_short_and_never_empty() -> None:
    assert slugify("Use Café-style «queues» for ML/ops!") == "use-cafe-style-queues-for-ml-ops"
    assert slugify("🚀🚀") == "decision"
    long = slugify("word " * 40)
    assert len(long) <= 50 and not long.endswith("-")


def test_model_fields_are_capped_and_trimmed() -> None:
    fields = DecisionFields.model_validate(
        {**STORAGE_DECISION, "title": "# " + "t" * 500, "follow_ups": ["x\n" * 1000] * 50}
    )
    assert len(fields.title) <= 120 and not fields.title.startswith("#")
    assert len(fields.follow_ups) == 10 and all(len(f) <= 400 for f in fields.follow_ups)


async def test_export_writes_rewrites_unchanged_and_skips_edited_files(
    core: Core, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    await discussed(core, fake_anthropic)
    fake_anthropic.reply_tool_use("record_decision", STORAGE_DECISION)
    await ask(core, "!adr")
    out = tmp_path / "docs" / "adr"
    first = export_records(core.store, out)
    [path] = first.written
    assert path == out / "0001-store-ticks-as-parquet-on-s3-partitioned-by-day.md"
    assert export_records(core.store, out).unchanged == [path]
    # The record changes (a link learnt later): an unedited file is rewritten.
    set_link(core.store, "slack/T1/C1/t1", "https://acme.slack.com/archives/C1/p1")
    again = export_records(core.store, out)
    assert again.written == [path] and "https://acme.slack.com/archives/C1/p1" in path.read_text()
    # Someone edits the file: it is never overwritten.
    path.write_text(path.read_text() + "\nEdited by Bob.\n")
    changed: Any = core.store.conn.execute(
        "UPDATE decision_records SET markdown = markdown || 'changed'"
    )
    assert changed.rowcount == 1
    report = export_records(core.store, out)
    assert report.skipped == [path] and report.written == []
    assert path.read_text().endswith("Edited by Bob.\n")


async def test_summary_reads_a_question_whose_turn_failed(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_error(400, "invalid_request_error", "scripted refusal")
    failed = await ask(core, "Should the feature store be Feast or Redis?")
    assert failed.kind == "error"
    fake_anthropic.reply_text("### Decisions\n- None yet.\n\n### Open questions\n- Feast or Redis.")
    await ask(core, "!summary")
    transcript = fake_anthropic.message_requests[-1].body["messages"][0]["content"][0]["text"]
    assert "Should the feature store be Feast or Redis?" in transcript
