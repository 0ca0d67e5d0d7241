"""One thread, one order: bursts are answered message by message, commands that change a
thread wait for its running turn, and a bare mention is a greeting or a request to weigh in."""

from __future__ import annotations

import asyncio

from bot.app import Core
from bot.events import ContextMessage
from bot.signoff import ends_with_sign_off_once
from tests.conftest import eventually
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg, texts


async def test_a_burst_gets_one_answer_per_message_in_order(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 0.2
    for answer in ("Answer one.", "Answer two.", "Answer three."):
        fake_anthropic.reply_text(answer)
    handle = core.consultant.handle
    first = asyncio.create_task(
        handle(msg("Which store for ticks?", thread="burst", event_id="b1", mentioned=True))
    )
    await eventually(lambda: len(fake_anthropic.message_requests) == 1, "the first model call")
    # Two follow-ups while the first answer is still being written.
    second = asyncio.create_task(handle(msg("We have 5 TB.", thread="burst", event_id="b2")))
    third = asyncio.create_task(handle(msg("And a 2 ms budget.", thread="burst", event_id="b3")))
    replies = await asyncio.gather(first, second, third)

    assert [r.text.split("\n")[0] if r else None for r in replies] == [
        "Answer one.",
        "Answer two.",
        "Answer three.",
    ]
    reqs = fake_anthropic.message_requests
    assert len(reqs) == 3  # one model call per message: nothing merged, nothing dropped
    for req, (question, previous_answer, later) in zip(
        reqs[1:],
        [
            ("We have 5 TB.", "Answer one.", "And a 2 ms budget."),
            ("And a 2 ms budget.", "Answer two.", None),
        ],
        strict=True,
    ):
        said = texts(req.body)
        assert said[-1].endswith(question)
        assert len(req.body["messages"][-1]["content"]) == 1  # the queued message alone
        assert any(t.startswith(previous_answer) for t in said)
        assert later is None or not any(later in t for t in said)


async def test_forget_during_a_tool_round_waits_for_the_turn(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 0.2
    fake_anthropic.reply_tool_use("list_todos", {})
    fake_anthropic.reply_text("Roll out the feature store behind a flag.")
    turn = asyncio.create_task(
        core.consultant.handle(msg("Plan the feature store rollout", thread="fg"))
    )
    await eventually(lambda: len(fake_anthropic.message_requests) == 1, "the first model call")
    forget = asyncio.create_task(core.consultant.handle(msg("!forget", thread="fg", event_id="f1")))
    await asyncio.sleep(0)  # one step: a command that did not wait would be done now
    answer, forgotten = await asyncio.gather(turn, forget)

    tool_round = fake_anthropic.message_requests[1].body
    assert any("Plan the feature store rollout" in t for t in texts(tool_round))
    assert answer is not None and answer.text.startswith("Roll out the feature store")
    # It ran after the turn: the whole turn (question, tool call, result, answer) is gone.
    assert forgotten is not None and "Forgotten: 4 stored messages" in forgotten.text
    thread = core.store.get_thread("slack/T1/C1/fg")
    assert thread is not None and core.consultant.history(thread) == []


async def test_todo_edits_wait_and_read_only_commands_do_not(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 0.2
    fake_anthropic.reply_tool_use("list_todos", {})
    fake_anthropic.reply_text("Nothing on the list yet.")
    turn = asyncio.create_task(core.consultant.handle(msg("What is open?", thread="td")))
    await eventually(lambda: len(fake_anthropic.message_requests) == 1, "the first model call")
    add = asyncio.create_task(
        core.consultant.handle(msg("!todo add Pick a broker", thread="td", event_id="a1"))
    )
    listing = await core.consultant.handle(msg("!todos", thread="td", event_id="l1"))
    assert listing is not None and "No todos" in listing.text
    assert not turn.done()  # !todos answered while the turn was still running
    await asyncio.gather(turn, add)
    tool_result = fake_anthropic.message_requests[1].body["messages"][-1]["content"][0]
    assert tool_result["content"] == "No todos in this thread yet."  # the add came after
    assert core.store.list_todos(core.store.get_thread("slack/T1/C1/td").id)  # type: ignore[union-attr]


async def test_a_bare_mention_at_the_top_level_gets_a_greeting_not_a_model_call(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    bare = msg("", thread="hello", event_id="bare1", mentioned=True)
    reply = await core.consultant.handle(bare)
    assert reply is not None and reply.kind == "notice"
    assert "archbot" in reply.text and core.consultant.commands.help_text() in reply.text
    assert ends_with_sign_off_once(reply.text)
    assert await core.consultant.handle(bare) is None  # a redelivery is not greeted twice
    assert fake_anthropic.requests == []


async def test_a_bare_mention_inside_a_discussion_asks_the_model_to_weigh_in(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    context = (ContextMessage("alice", "Kafka or Redpanda for the tick stream?"),)
    fake_anthropic.reply_text("Redpanda, if you have no Kafka team.")
    reply = await core.consultant.handle(
        msg("", thread="disc", event_id="bare2", mentioned=True, prior_context=context)
    )
    assert reply is not None and reply.kind == "answer"
    said = texts(fake_anthropic.message_requests[0].body)
    assert any("Kafka or Redpanda" in t for t in said)
    assert "weigh in" in said[-1]

    # A thread with the bot's own history counts as a discussion too.
    fake_anthropic.reply_text("Partition by symbol.")
    await core.consultant.handle(msg("How do we partition?", thread="hist"))
    fake_anthropic.reply_text("Still by symbol.")
    again = await core.consultant.handle(msg("", thread="hist", event_id="bare3", mentioned=True))
    assert again is not None and again.kind == "answer"
    assert "weigh in" in texts(fake_anthropic.message_requests[-1].body)[-1]
