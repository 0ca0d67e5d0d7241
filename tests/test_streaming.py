"""Streaming: deltas reach the sink as written, and what was sent reads as the final reply."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.app import Core
from bot.signoff import SIGN_OFF, sign_off
from bot.streaming import ReplyStream, rest_of_reply
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg


@given(
    deltas=st.lists(st.text(min_size=0, max_size=80), max_size=40),
    ending=st.sampled_from(["", SIGN_OFF, "Done! what are we tackling next?  \n", " <!here>"]),
)
def test_what_is_sent_reads_as_the_final_reply(deltas: list[str], ending: str) -> None:
    stream = ReplyStream()
    sent = "".join(stream.feed(d) for d in [*deltas, ending])
    final = sign_off("".join(deltas) + ending)
    sent += stream.finish(final)
    assert sent == final
    assert sent.count(SIGN_OFF) == final.count(SIGN_OFF)


def test_chunks_break_at_whitespace_and_hold_back_the_tail() -> None:
    stream = ReplyStream(holdback=20)
    chunk = stream.feed("alpha beta gamma delta epsilon zeta eta theta <!here> iota")
    assert chunk.endswith(" ") and "<!her" not in chunk.rstrip().split(" ")[-1]
    assert len(chunk) <= len("alpha beta gamma delta epsilon zeta eta theta <!here> iota") - 20


def test_an_error_after_partial_text_follows_it() -> None:
    stream = ReplyStream(holdback=5)
    sent = stream.feed("Partial answer about Kafka partitions ")
    rest = stream.finish("The model failed.")
    assert (sent + rest).endswith("\n\nThe model failed.")


async def test_consultant_streams_every_round_and_returns_the_whole_answer(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("add_todo", {"title": "Measure p99"}, text="Let me note that.")
    fake_anthropic.reply_text("Measure first, then pick the broker. " * 30)
    deltas: list[str] = []

    async def sink(text: str) -> None:
        deltas.append(text)

    reply = await core.consultant.handle(msg("Which broker?", thread="stream"), on_text=sink)
    assert reply is not None
    streamed = "".join(deltas)
    assert streamed.startswith("Let me note that.\n\nMeasure first")
    assert sign_off(streamed) == reply.text
    assert reply.text.startswith(streamed.rstrip())  # an exact prefix: nothing to reconcile
    assert len(deltas) > 2  # it arrived in pieces
    assert all(r.body.get("stream") is True for r in fake_anthropic.message_requests)
    # History gets the last round's text once; the first round's text stays with its tool call.
    thread = core.store.get_thread(reply.thread_key)
    assert thread is not None
    history_texts = [
        b["text"]
        for m in core.consultant.history(thread)
        for b in m["content"]
        if b.get("type") == "text"
    ]
    assert sum("Let me note that." in t for t in history_texts) == 1


async def test_a_failing_sink_does_not_lose_the_answer(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("A long answer. " * 100)

    async def broken(text: str) -> None:
        raise ConnectionError("platform went away")

    reply = await core.consultant.handle(msg("Hello?", thread="broken"), on_text=broken)
    assert reply is not None and reply.kind == "answer"
    assert reply.text.startswith("A long answer.")


def test_the_rest_of_a_reply_continues_what_was_streamed() -> None:
    final = f"Use Feast.\n\nThen measure.\n\n{SIGN_OFF}"
    assert rest_of_reply("Use Feast.\n\nThen ", final) == f"measure.\n\n{SIGN_OFF}"
    # Whitespace may differ (the sign-off rule trims the model's ending).
    assert rest_of_reply("Use Feast. \n\nThen ", final) == f"measure.\n\n{SIGN_OFF}"
    assert rest_of_reply("Use Feast.Then", final) == f" measure.\n\n{SIGN_OFF}"
    # An error notice that replaced the answer follows what was shown.
    assert rest_of_reply("Use Feast because ", "The model failed.") == "\n\nThe model failed."


async def test_streamed_text_is_an_exact_prefix_even_with_untidy_whitespace(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("list_todos", {}, text="  Checking the list first.  \n")
    fake_anthropic.reply_text("\nNothing open yet.   " + "Plan the backfill. " * 20 + "\n\n")
    deltas: list[str] = []

    async def sink(text: str) -> None:
        deltas.append(text)

    reply = await core.consultant.handle(msg("What is open?", thread="ws"), on_text=sink)
    assert reply is not None
    stream = ReplyStream()
    sent = "".join(stream.feed(d) for d in deltas)
    assert reply.text.startswith(sent)
    assert sent + stream.finish(reply.text) == reply.text
    assert reply.text.count("Nothing open yet.") == 1
