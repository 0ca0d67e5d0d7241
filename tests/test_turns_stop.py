"""Stop means stop: `Consultant.stop` cancels a thread's running turn, keeps what was written
as cut off, answers "Stopped.", and the thread goes on; tool calls report their progress."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from pydantic import Field

from bot.app import Core
from bot.consultant import CUT_OFF_NOTE
from bot.feedback import record_vote
from bot.progress import ToolProgress, describe_call, shown_value
from bot.signoff import SIGN_OFF
from bot.tools import ToolContext, ToolRegistry
from tests.conftest import eventually
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg, texts

KEY = "slack/T1/C1/{}"


async def test_a_stop_during_a_slow_model_call_answers_stopped_at_once_and_the_thread_goes_on(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 6.0  # nothing queued: the stopped call is never answered in time
    turn = asyncio.create_task(core.consultant.handle(msg("Design the tick store", thread="s1")))
    await eventually(lambda: len(fake_anthropic.message_requests) == 1, "the model call")
    assert core.consultant.running_turn(KEY.format("s1")) is not None

    started = time.monotonic()
    assert core.consultant.stop(KEY.format("s1"), "U1")
    reply = await asyncio.wait_for(turn, 2)
    assert time.monotonic() - started < 1.0
    assert reply is not None and reply.kind == "stopped"
    assert reply.text.startswith("Stopped.") and reply.text.rstrip().endswith(SIGN_OFF)
    assert not reply.takes_feedback
    assert core.consultant.running_turn(KEY.format("s1")) is None
    assert not core.consultant.stop(KEY.format("s1"))  # nothing runs any more

    turn_row = core.store.get_turn(reply.turn_id or 0)
    assert turn_row.status == "stopped"

    fake_anthropic.latency = 0.0
    fake_anthropic.reply_text("Partition by day.")
    follow_up = await core.consultant.handle(msg("And the partitioning?", thread="s1"))
    assert follow_up is not None and follow_up.text.startswith("Partition by day.")
    said = texts(fake_anthropic.message_requests[-1].body)
    # The stopped question is history, with the note that its answer was cut off.
    assert any("Design the tick store" in t for t in said)
    assert CUT_OFF_NOTE in said
    assert not any(t.startswith("Fake answer") for t in said)


async def test_a_stop_mid_stream_keeps_what_was_written_and_nothing_more_is_sent(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.stream_delay = 0.3
    fake_anthropic.reply_text("Use Parquet on S3, partitioned by day. " * 20)
    seen: list[str] = []

    async def on_text(text: str) -> None:
        seen.append(text)

    turn = asyncio.create_task(
        core.consultant.handle(msg("Where do ticks go?", thread="s2"), on_text=on_text)
    )
    await eventually(lambda: "".join(seen).startswith("Use Parquet"), "the first streamed text")
    assert core.consultant.stop(KEY.format("s2"))
    reply = await asyncio.wait_for(turn, 2)
    assert reply is not None and reply.kind == "stopped"
    sent_at_stop = "".join(seen)
    await asyncio.sleep(0.5)  # longer than a delta: a stream that went on would show here
    assert "".join(seen) == sent_at_stop

    thread = core.store.get_thread(KEY.format("s2"))
    assert thread is not None
    history = core.consultant.history(thread)
    assert [m["role"] for m in history] == ["user", "assistant"]
    kept = history[1]["content"][0]["text"]
    assert kept.startswith("Use Parquet") and kept.endswith(CUT_OFF_NOTE)
    assert len(kept) < len("Use Parquet on S3, partitioned by day. " * 20)


def slow_tools(started: asyncio.Event) -> ToolRegistry:
    """A registry whose one tool waits until cancelled: a stop must reach it."""
    registry = ToolRegistry()

    @registry.tool
    async def read_file(
        ctx: ToolContext,
        path: Annotated[str, Field(description="A path.")],
        repo: str | None = None,
    ) -> str:
        """Read a file (it never finishes here)."""
        started.set()
        await asyncio.Event().wait()
        return "unreachable"

    return registry


async def test_a_stop_during_a_tool_call_cancels_it_and_ends_its_progress_card(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    started = asyncio.Event()
    core.consultant.tools = slow_tools(started)
    fake_anthropic.reply_tool_use(
        "read_file", {"path": "pipelines/resample.py", "repo": "acme/trading"}
    )
    progress: list[ToolProgress] = []

    async def on_progress(item: ToolProgress) -> None:
        progress.append(item)

    turn = asyncio.create_task(
        core.consultant.handle(msg("Review resampling", thread="s3"), on_progress=on_progress)
    )
    await asyncio.wait_for(started.wait(), 5)
    assert core.consultant.stop(KEY.format("s3"))
    reply = await asyncio.wait_for(turn, 2)
    assert reply is not None and reply.kind == "stopped"
    assert [p.status for p in progress] == ["in_progress", "error"]
    assert progress[0].title == "Reading `pipelines/resample.py` in acme/trading"
    assert len(fake_anthropic.message_requests) == 1  # no round after the stop
    thread = core.store.get_thread(KEY.format("s3"))
    assert thread is not None
    # No tool_use is left without its result: the round was not stored, only the cut-off note.
    history = core.consultant.history(thread)
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert all(b["type"] == "text" for m in history for b in m["content"])


async def test_bang_stop_stops_the_running_turn_without_waiting_for_it_and_says_so_once(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 6.0
    turn = asyncio.create_task(core.consultant.handle(msg("Size the Kafka cluster", thread="s4")))
    await eventually(lambda: len(fake_anthropic.message_requests) == 1, "the model call")
    command = await asyncio.wait_for(
        core.consultant.handle(msg("!stop", thread="s4", event_id="stop-1")), 1
    )
    assert command is None  # the stopped turn answers for it
    reply = await asyncio.wait_for(turn, 2)
    assert reply is not None and reply.text.startswith("Stopped.")

    idle = await core.consultant.handle(msg("!stop", thread="s4", event_id="stop-2"))
    assert idle is not None and idle.kind == "command"
    assert idle.text.startswith("Nothing is being written in this thread")


async def test_a_stop_does_not_touch_the_turns_queued_behind_it(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 1.0  # the stopped call leaves the scripted answer for the next
    fake_anthropic.reply_text("Second answer.")
    first = asyncio.create_task(core.consultant.handle(msg("One", thread="s5", event_id="q1")))
    await eventually(lambda: len(fake_anthropic.message_requests) == 1, "the first model call")
    second = asyncio.create_task(core.consultant.handle(msg("Two", thread="s5", event_id="q2")))
    assert core.consultant.stop(KEY.format("s5"))
    stopped, answered = await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert stopped is not None and stopped.kind == "stopped"
    assert answered is not None and answered.text.startswith("Second answer.")


async def test_tool_calls_report_progress_with_titles_and_github_links(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    core.store.bind_channel_repo("slack/T1/C1", "acme/trading", "U1")
    fake_anthropic.reply_tool_use("list_todos", {})
    fake_anthropic.reply_tool_use("read_file", {"path": "pipelines/resample.py"})
    fake_anthropic.reply_text("Resampling looks fine.")
    progress: list[ToolProgress] = []

    async def on_progress(item: ToolProgress) -> None:
        progress.append(item)

    reply = await core.consultant.handle(
        msg("Review resampling", thread="p1"), on_progress=on_progress
    )
    assert reply is not None and reply.takes_feedback
    assert [(p.title, p.status) for p in progress] == [
        ("Reading the todo list", "in_progress"),
        ("Reading the todo list", "complete"),
        ("Reading `pipelines/resample.py` in acme/trading", "in_progress"),
        ("Reading `pipelines/resample.py` in acme/trading", "error"),  # no GitHub token here
    ]
    assert progress[2].id == progress[3].id != progress[0].id
    [source] = progress[2].sources
    assert source.url == "https://github.com/acme/trading/blob/HEAD/pipelines/resample.py"


async def test_a_failing_progress_sink_never_fails_the_turn(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("list_todos", {})
    fake_anthropic.reply_text("Done anyway.")

    async def broken(item: ToolProgress) -> None:
        raise RuntimeError("the platform is down")

    reply = await core.consultant.handle(msg("Todos?", thread="p2"), on_progress=broken)
    assert reply is not None and reply.text.startswith("Done anyway.")


def test_titles_neutralise_what_the_model_wrote() -> None:
    hostile = describe_call(
        "t1", "read_file", {"path": "a`b <!channel>\n| x |" + "y" * 200, "repo": "../../evil/x"}
    )
    assert "`" not in hostile.title.removeprefix("Reading `").removesuffix("`")
    assert "<!channel>" not in hostile.title and "\n" not in hostile.title
    assert " in " not in hostile.title  # an invalid repo is not named
    assert hostile.sources == ()
    assert len(shown_value("z" * 500)) == 60
    traversal = describe_call("t2", "read_file", {"path": "../../etc/passwd"}, "acme/trading")
    assert traversal.sources == ()  # no link from a path that needs guessing
    search = describe_call("t3", "search_code", {"query": "FeatureStore"}, "acme/trading")
    assert search.title == "Searching acme/trading for `FeatureStore`"
    assert search.sources[0].url.startswith("https://github.com/search?q=repo%3Aacme%2Ftrading")
    mcp = describe_call("t4", "grafana__query_prometheus", {"expr": "up"})
    assert mcp.title == "Calling `query_prometheus` on the `grafana` extension"
    page = describe_call("t5", "fetch_url", {"url": "https://docs.example.com/a?b=1"})
    assert page.title == "Reading a page on docs.example.com"


async def test_quality_counts_this_weeks_votes_per_channel_with_the_latest_click(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("Answer one.")
    fake_anthropic.reply_text("Answer two.")
    one = await core.consultant.handle(msg("Q1", thread="f1", event_id="f1"))
    two = await core.consultant.handle(msg("Q2", thread="f2", event_id="f2", channel="C2"))
    assert one is not None and one.turn_id and two is not None and two.turn_id
    rows = core.store.conn.execute("SELECT turn_id FROM usage ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [one.turn_id, two.turn_id]  # the ledger names the turn

    record_vote(core.store, one.turn_id, "U1", "down")
    record_vote(core.store, one.turn_id, "U1", "up")  # the latest click counts
    record_vote(core.store, one.turn_id, "U2", "up")
    record_vote(core.store, two.turn_id, "U1", "down")
    report = await core.consultant.handle(msg("!quality", thread="f1", event_id="fq"))
    assert report is not None and report.kind == "command"
    lines = report.text.splitlines()
    [here] = [line for line in lines if line.startswith("| C1 (here)")]
    assert "👍 2" in here and "👎 0" in here and "100%" in here and "$" in here
    [other] = [line for line in lines if line.startswith("| C2 ")]
    assert "👍 0" in other and "👎 1" in other and "0%" in other and other.endswith("| - |")
