"""History stays bounded: compaction in chunks folded into one summary, a refused compaction
drops the oldest turns with a note instead of failing every later turn, and one huge message
cannot blow up a request."""

from __future__ import annotations

import itertools
from pathlib import Path

from bot.app import Core, build_core
from bot.consultant import COMPACTION_MAX_CALLS
from bot.prompts import COMPACTION_PROMPT
from bot.store import Store
from tests.conftest import make_secrets, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic, RecordedRequest
from tests.test_consultant import msg, texts


def seed(store: Store, thread: str, turns: int, chars: int) -> None:
    """A thread with `turns` answered turns whose question and answer are `chars` long."""
    with store.transaction():
        row = store.ensure_thread_for(msg("seed", thread=thread))
        for i in range(turns):
            turn = store.start_turn(
                row,
                event_key=None,
                user="U1",
                user_name="n",
                text=f"q{i}",
                content=[{"type": "text", "text": f"Question {i}: " + "q" * chars}],
            )
            answer = f"Answer {i}: " + "a" * chars
            store.add_message(row.id, turn, "assistant", [{"type": "text", "text": answer}])
            store.finish_turn(turn, status="done", reply=answer)


def compactions(fake: FakeAnthropic) -> list[RecordedRequest]:
    return [r for r in fake.message_requests if r.body["system"][0]["text"] == COMPACTION_PROMPT]


def summary_of(core: Core, thread: str) -> str:
    row = core.store.get_thread(f"slack/T1/C1/{thread}")
    assert row is not None and row.summary is not None
    return row.summary


async def test_ten_thousand_messages_compact_in_bounded_requests(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    budget = core.settings.llm.history_token_budget
    seed(core.store, "big", turns=5000, chars=150)  # 10,000 messages, ~1.9 MB of history
    reply = await core.consultant.handle(msg("Where were we?", thread="big"))
    assert reply is not None and reply.kind == "answer"

    calls = compactions(fake_anthropic)
    assert 1 <= len(calls) <= COMPACTION_MAX_CALLS
    for call in calls:
        assert len(call.raw) // 4 < budget * 0.6, len(call.raw)  # well under the budget
    chat = fake_anthropic.message_requests[-1]
    assert sum(len(t) for t in texts(chat.body)) // 4 <= budget
    assert "dropped from memory" in summary_of(core, "big")

    # The next turn fits: no compaction, one request.
    before = len(fake_anthropic.message_requests)
    await core.consultant.handle(msg("Go on.", thread="big"))
    assert len(fake_anthropic.message_requests) == before + 1


async def test_chunk_summaries_are_folded_and_every_old_turn_is_read_once(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    budget = 2000
    core = build_core(
        make_settings(tmp_path, llm={"history_token_budget": budget}), make_secrets(fake_anthropic)
    )
    try:
        seed(core.store, "fold", turns=12, chars=800)
        await core.consultant.handle(msg("Sum it up?", thread="fold"))
        calls = compactions(fake_anthropic)
        assert len(calls) > 1  # more than one chunk
        bodies = [texts(c.body)[0] for c in calls]
        for body in bodies:
            transcript = body.rsplit("Transcript:\n", 1)[1]
            assert len(transcript) <= budget * 2
        # Each chunk is folded into the summary of the chunks before it (the fake echoes).
        for previous, current in itertools.pairwise(bodies):
            assert current.startswith(f"Summary so far:\nFake answer to: {previous[:200]}")
        read = [
            i
            for i in range(12)
            for body in bodies
            if f"Question {i}: " in body.rsplit("Transcript:\n", 1)[1]
        ]
        assert read == sorted(set(read)) and read[0] == 0  # oldest first, none twice
        last = fake_anthropic.message_requests[-1].body
        assert texts(last)[0].startswith("Summary of the earlier conversation")
        assert not any(f"Question {i}: " in t for i in read for t in texts(last)[1:])
    finally:
        await core.aclose()


async def test_a_refused_compaction_drops_the_oldest_turns_with_a_note(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"history_token_budget": 2000}), make_secrets(fake_anthropic)
    )
    try:
        seed(core.store, "refused", turns=12, chars=800)
        fake_anthropic.reply_error(400, "invalid_request_error", "prompt is too long")
        fake_anthropic.reply_text("Here is where we are.")
        reply = await core.consultant.handle(msg("Status?", thread="refused"))
        assert reply is not None and reply.kind == "answer"
        assert reply.text.startswith("Here is where we are.")
        summary = summary_of(core, "refused")
        assert "could not be summarised" in summary and "dropped from memory" in summary
        chat = fake_anthropic.message_requests[-1].body
        assert "could not be summarised" in texts(chat)[0]
        assert not any("Question 0: " in t for t in texts(chat))

        # Later turns are not stuck behind the failed compaction.
        before = len(fake_anthropic.message_requests)
        again = await core.consultant.handle(msg("And now?", thread="refused"))
        assert again is not None and again.kind == "answer"
        assert len(fake_anthropic.message_requests) == before + 1
    finally:
        await core.aclose()


async def test_one_huge_message_is_cut_not_sent_whole(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    budget = 2000
    core = build_core(
        make_settings(tmp_path, llm={"history_token_budget": budget}), make_secrets(fake_anthropic)
    )
    try:
        pasted = "2026-12-01 ERROR feature lag\n" * 40_000  # a 1.2 MB log pasted in
        reply = await core.consultant.handle(msg(pasted, thread="paste"))
        assert reply is not None and reply.kind == "answer"
        sent = texts(fake_anthropic.message_requests[-1].body)[-1]
        assert len(sent) <= budget * 2 + 20 and f"[... cut: {len(pasted) + 8:,} characters" in sent

        # A huge message stored by an older build is cut when compacted, too.
        seed(core.store, "legacy", turns=1, chars=500_000)
        await core.consultant.handle(msg("Thoughts?", thread="legacy"))
        assert max(len(r.raw) for r in fake_anthropic.message_requests[1:]) < 100_000
    finally:
        await core.aclose()
