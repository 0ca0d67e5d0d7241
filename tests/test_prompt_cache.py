"""Where the cache breakpoints sit, checked on the requests the fake received: each request
reads the previous one's cached prefix (the cache matches content up to a breakpoint and
looks back at most 20 blocks from each breakpoint for an earlier one)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from bot.app import Core
from bot.events import IncomingMessage
from tests.fakes.fake_anthropic import MAX_CACHE_BREAKPOINTS, FakeAnthropic, RecordedRequest

LOOKBACK_BLOCKS = 20


def msg(text: str, n: int) -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread="cache",
        user="U1",
        user_name="Alice",
        text=text,
        event_id=f"ev-cache-{n}",
    )


def flat_blocks(request: RecordedRequest) -> tuple[list[str], int]:
    """Every message block in order, without its marker, and the index of the marked one."""
    blocks: list[str] = []
    marked = -1
    for m in request.body["messages"]:
        for b in m["content"]:
            if "cache_control" in b:
                assert marked == -1, "more than one breakpoint in the messages"
                marked = len(blocks)
            plain = {k: v for k, v in b.items() if k != "cache_control"}
            blocks.append(m["role"] + json.dumps(plain, sort_keys=True))
    return blocks, marked


def breakpoints(body: dict[str, Any]) -> int:
    count = sum("cache_control" in b for b in body["system"])
    count += sum("cache_control" in t for t in body.get("tools", []))
    count += sum("cache_control" in b for m in body["messages"] for b in m["content"])
    return count + ("cache_control" in body)


async def test_each_request_reads_the_previous_cached_prefix_through_tool_rounds(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("add_todo", {"title": "Pick a time-series store"})
    fake_anthropic.reply_tool_use("list_todos", {}, text="Listing what is open.")
    fake_anthropic.reply_text("ClickHouse for ticks, Postgres for the rest.")
    first = await core.consultant.handle(msg("Where do we store 5 years of ticks?", 1))
    fake_anthropic.reply_text("Partition by day and symbol.")
    second = await core.consultant.handle(msg("How do we partition it?", 2))
    assert first is not None and first.kind == "answer", first.text
    assert second is not None and second.kind == "answer", second.text

    requests = fake_anthropic.message_requests
    assert len(requests) == 4
    for request in requests:
        body = request.body
        assert "cache_control" not in body
        assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
        assert 2 <= breakpoints(body) <= MAX_CACHE_BREAKPOINTS
        blocks, marked = flat_blocks(request)
        assert marked == len(blocks) - 1  # on the newest block
    for previous, current in itertools.pairwise(requests):
        assert previous.body["system"] == current.body["system"]
        assert previous.body["tools"] == current.body["tools"]
        old, old_mark = flat_blocks(previous)
        new, new_mark = flat_blocks(current)
        assert new[: old_mark + 1] == old[: old_mark + 1]  # the cached prefix, unchanged
        assert new_mark - old_mark <= LOOKBACK_BLOCKS  # close enough for the cache to find it
