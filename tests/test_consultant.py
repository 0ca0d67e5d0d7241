"""The consultant core, driven through the real Anthropic SDK against the loopback fake."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

from bot.app import Core, build_core
from bot.events import ContextMessage, IncomingMessage
from bot.prompts import CONSULTANT_PROMPT
from bot.signoff import SIGN_OFF, ends_with_sign_off_once
from bot.store import utcnow
from tests.conftest import make_secrets, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic


def msg(
    text: str,
    *,
    thread: str = "t1",
    event_id: str | None = None,
    user: str = "U1",
    platform: str = "slack",
    channel: str = "C1",
    **extra: object,
) -> IncomingMessage:
    return IncomingMessage(
        platform=platform,
        workspace="T1",
        channel=channel,
        thread=thread,
        user=user,
        user_name=f"name-{user}",
        text=text,
        event_id=event_id or f"ev-{text[:20]}-{thread}-{user}",
        **extra,  # type: ignore[arg-type]
    )


def texts(request_body: dict) -> list[str]:
    out = []
    for m in request_body["messages"]:
        for block in m["content"]:
            if block.get("type") == "text":
                out.append(block["text"])
    return out


async def test_first_turn_sends_persona_tools_and_signs_off(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("Profile the job before buying hardware.")
    reply = await core.consultant.handle(msg("Preprocessing takes 4 hours. Speed it up?"))
    assert reply is not None
    assert reply.text == f"Profile the job before buying hardware.\n\n{SIGN_OFF}"
    body = fake_anthropic.message_requests[0].body
    assert body["system"][0]["text"] == CONSULTANT_PROMPT
    # The persona, the hand-off to the Software Architect and the closing line are all asked for.
    for must in (
        "ML systems architect",
        "delegate_to_software_architect",
        f"once, on its own: {SIGN_OFF}",
    ):
        assert must in CONSULTANT_PROMPT, must
    assert {t["name"] for t in body["tools"]} >= {"list_todos", "add_todo", "update_todo"}
    assert body["messages"][-1]["content"][-1]["text"].endswith(
        "Preprocessing takes 4 hours. Speed it up?"
    )
    # The conversation's breakpoint sits on the last block: a top-level key breaks gateways.
    assert "cache_control" not in body
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}


async def test_history_is_per_thread(core: Core, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply_text("Use Polars.")
    await core.consultant.handle(msg("Pandas or Polars?", thread="a"))
    fake_anthropic.reply_text("Kafka.")
    await core.consultant.handle(msg("Which broker?", thread="b"))
    fake_anthropic.reply_text("Because it is columnar.")
    await core.consultant.handle(msg("Why?", thread="a"))
    b_request, a_followup = fake_anthropic.message_requests[1], fake_anthropic.message_requests[2]
    assert not any("Pandas or Polars?" in t for t in texts(b_request.body))
    a_texts = texts(a_followup.body)
    assert any("Pandas or Polars?" in t for t in a_texts)
    assert any(t.startswith("Use Polars.") for t in a_texts)
    assert not any("Which broker?" in t for t in a_texts)


async def test_each_request_extends_the_previous_one_byte_for_byte(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    for i in range(4):
        fake_anthropic.reply_text(f"Answer {i} " + "detail " * 50)
        await core.consultant.handle(msg(f"Question {i}?", thread="cache"))
    reqs = fake_anthropic.message_requests
    for prev, cur in itertools.pairwise(reqs):
        assert json.dumps(cur.body["system"]) == json.dumps(prev.body["system"])
        assert json.dumps(cur.body["tools"]) == json.dumps(prev.body["tools"])
        # The breakpoint moves to the newest block; everything else is an extension.
        prev_msgs = json.dumps(without_breakpoints(prev.body["messages"]))[:-1]
        assert json.dumps(without_breakpoints(cur.body["messages"])).startswith(prev_msgs)
    for req in reqs:
        marked = [b for m in req.body["messages"] for b in m["content"] if "cache_control" in b]
        assert marked == [req.body["messages"][-1]["content"][-1]]


def without_breakpoints(messages: list[dict]) -> list[dict]:
    """The messages with cache_control markers taken off their blocks."""
    return [
        {
            **m,
            "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]],
        }
        for m in messages
    ]


async def test_tool_loop_adds_a_todo_and_returns_the_result(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("add_todo", {"title": "Benchmark Polars on one day of ticks"})
    fake_anthropic.reply_text("Added it to the list.")
    reply = await core.consultant.handle(msg("Track the benchmark", thread="todo"))
    assert reply is not None and reply.text.startswith("Added it to the list.")
    second = fake_anthropic.message_requests[1].body
    result = second["messages"][-1]["content"][0]
    assert result["type"] == "tool_result"
    assert result["content"] == "Added todo 1: Benchmark Polars on one day of ticks"
    assert "is_error" not in result
    listing = await core.consultant.handle(msg("!todos", thread="todo", event_id="cmd1"))
    assert listing is not None and "1. [ ] Benchmark Polars on one day of ticks" in listing.text
    assert len(fake_anthropic.message_requests) == 2  # the command did not call the model


async def test_failing_tool_becomes_an_error_result_and_the_turn_goes_on(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use("update_todo", {"number": 7, "status": "done"})
    fake_anthropic.reply_tool_use("no_such_tool", {})
    fake_anthropic.reply_tool_use("add_todo", {"title": ""})
    fake_anthropic.reply_text("Could not update it.")
    reply = await core.consultant.handle(msg("Close todo 7", thread="err"))
    assert reply is not None and reply.text.startswith("Could not update it.")
    results = [r.body["messages"][-1]["content"][0] for r in fake_anthropic.message_requests[1:]]
    assert all(r["is_error"] is True for r in results)
    assert "no todo 7" in results[0]["content"]
    assert "no tool named" in results[1]["content"]
    assert "Invalid input for add_todo" in results[2]["content"]


async def test_tool_rounds_are_capped(tmp_path: Path, fake_anthropic: FakeAnthropic) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"max_tool_rounds": 2}), make_secrets(fake_anthropic)
    )
    try:
        for _ in range(3):
            fake_anthropic.reply_tool_use("list_todos", {})
        fake_anthropic.reply_text("Here is what I have.")
        reply = await core.consultant.handle(msg("Loop forever", thread="cap"))
        reqs = fake_anthropic.message_requests
        assert len(reqs) == 3  # 1 + max_tool_rounds
        assert reqs[-1].body["tool_choice"] == {"type": "none"}
        assert reply is not None and ends_with_sign_off_once(reply.text)
    finally:
        await core.aclose()


async def test_offline_mode_names_the_key_and_commands_work(tmp_path: Path) -> None:
    core = build_core(make_settings(tmp_path), make_secrets(None, key=None))
    try:
        reply = await core.consultant.handle(msg("Design our feature store", thread="off"))
        assert reply is not None and reply.kind == "error"
        assert "ANTHROPIC_API_KEY" in reply.text and ends_with_sign_off_once(reply.text)
        added = await core.consultant.handle(
            msg("!todo add Pick a feature store", thread="off", event_id="c1")
        )
        assert added is not None and "Added todo 1" in added.text
        thread = core.store.get_thread(reply.thread_key)
        assert thread is not None
        kept = core.consultant.history(thread)
        assert "Design our feature store" in kept[0]["content"][0]["text"]
    finally:
        await core.aclose()


async def test_overloaded_model_keeps_the_message_for_next_time(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(make_settings(tmp_path, llm={"max_retries": 1}), make_secrets(fake_anthropic))
    try:
        fake_anthropic.always_error = 529
        reply = await core.consultant.handle(msg("Is Redis fine as a feature store?", thread="o"))
        assert reply is not None and reply.kind == "error"
        assert "overloaded" in reply.text and "saved" in reply.text
        assert ends_with_sign_off_once(reply.text)
        assert len(fake_anthropic.message_requests) == 2  # the SDK retried once
        fake_anthropic.always_error = None
        fake_anthropic.reply_text("Yes, for online features.")
        await core.consultant.handle(msg("Any news?", thread="o"))
        last = texts(fake_anthropic.message_requests[-1].body)
        assert any("Is Redis fine as a feature store?" in t for t in last)
        assert any("Any news?" in t for t in last)
    finally:
        await core.aclose()


async def test_bad_key_gives_a_clear_reply(tmp_path: Path, fake_anthropic: FakeAnthropic) -> None:
    core = build_core(make_settings(tmp_path), make_secrets(fake_anthropic))
    try:
        fake_anthropic.reply_error(401, "authentication_error", "invalid x-api-key")
        reply = await core.consultant.handle(msg("Hello", thread="auth"))
        assert reply is not None and "401" in reply.text and "ANTHROPIC_API_KEY" in reply.text
        assert "sk-ant-test" not in reply.text
    finally:
        await core.aclose()


async def test_redelivered_event_is_answered_once(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    first = await core.consultant.handle(msg("Hi", event_id="Ev1"))
    second = await core.consultant.handle(msg("Hi", event_id="Ev1"))
    assert first is not None and second is None
    assert len(fake_anthropic.message_requests) == 1


async def test_same_thread_in_order_different_threads_in_parallel(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 0.3
    start = asyncio.get_running_loop().time()
    replies = await asyncio.gather(
        *(core.consultant.handle(msg(f"q{i}", thread=f"par{i}")) for i in range(5))
    )
    parallel = asyncio.get_running_loop().time() - start
    assert all(r is not None for r in replies)
    assert parallel < 1.2  # five 0.3 s calls overlapped

    fake_anthropic.latency = 0.05
    await asyncio.gather(*(core.consultant.handle(msg(f"m{i}", thread="seq")) for i in range(4)))
    seq_requests = [
        r for r in fake_anthropic.message_requests if any("m0" in t for t in texts(r.body))
    ]
    last_user_texts = [texts(r.body)[-1] for r in seq_requests]
    assert [t.split(": ")[-1] for t in last_user_texts] == ["m0", "m1", "m2", "m3"]
    # each request contains every earlier message of the thread: one at a time
    assert len(texts(seq_requests[-1].body)) == 7


async def test_pending_turn_is_recovered_and_posted(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    settings, secrets = make_settings(tmp_path), make_secrets(fake_anthropic)
    crashed = build_core(settings, secrets)
    message = msg("What about drift monitoring?", thread="crash")
    with crashed.store.transaction():  # what handle() stores before the model call...
        thread = crashed.store.ensure_thread_for(message)
        crashed.store.start_turn(
            thread,
            event_key="slack:T1:crash",
            user="U1",
            user_name="n",
            text=message.text,
            content=[{"type": "text", "text": message.text}],
        )
    await crashed.aclose()  # ...then the process died

    posted: list[tuple[str, str | None, str]] = []

    class Outbox:
        platform = "slack"

        async def post(self, channel: str, thread: str | None, text: str) -> str:
            posted.append((channel, thread, text))
            return "ts1"

    restarted = build_core(settings, secrets)
    try:
        fake_anthropic.reply_text("Track PSI per feature.")
        assert await restarted.consultant.recover_pending({"slack": Outbox()}) == 1
        assert posted == [("C1", "crash", f"Track PSI per feature.\n\n{SIGN_OFF}")]
        assert restarted.store.pending_turns(created_before=utcnow()) == []
        assert await restarted.consultant.recover_pending({"slack": Outbox()}) == 0
    finally:
        await restarted.aclose()


async def test_long_history_is_compacted_into_a_summary(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"history_token_budget": 1000}), make_secrets(fake_anthropic)
    )
    try:
        for i in range(6):
            fake_anthropic.reply_text(f"Answer {i}: " + "x" * 800)
            await core.consultant.handle(msg(f"Question {i}", thread="long"))
        systems = [r.body["system"][0]["text"] for r in fake_anthropic.message_requests]
        compactions = [s for s in systems if s.startswith("You compress")]
        assert compactions, "no compaction call was made"
        thread = core.store.get_thread("slack/T1/C1/long")
        assert thread is not None and thread.summary
        last = fake_anthropic.message_requests[-1].body
        assert last["messages"][0]["content"][0]["text"].startswith(
            "Summary of the earlier conversation"
        )
        assert not any("Question 0" in t for t in texts(last))
        assert sum(len(t) for t in texts(last)) < 4 * 1000
        purposes = {r[0] for r in core.store.conn.execute("SELECT purpose FROM usage")}
        assert purposes == {"chat", "compaction"}
    finally:
        await core.aclose()


async def test_usage_ledger_records_tokens_and_cost(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text(
        "ok",
        usage={
            "input_tokens": 1000,
            "output_tokens": 200,
            "cache_read_input_tokens": 5000,
            "cache_creation_input_tokens": 100,
        },
    )
    await core.consultant.handle(msg("cost?", thread="u"))
    row = core.store.conn.execute("SELECT * FROM usage").fetchone()
    assert (
        row["input_tokens"],
        row["output_tokens"],
        row["cache_read_tokens"],
        row["cache_write_tokens"],
    ) == (1000, 200, 5000, 100)
    expected = (1000 * 3 + 200 * 15 + 5000 * 0.30 + 100 * 3.75) / 1_000_000
    assert abs(row["cost_usd"] - expected) < 1e-12
    usage = await core.consultant.handle(msg("!usage", thread="u", event_id="usage1"))
    assert usage is not None and "| this thread | 1 | 1,000 | 200 | 5,000 | 100 |" in usage.text


async def test_daily_budget_stops_model_calls(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"daily_token_budget_per_user": 50}),
        make_secrets(fake_anthropic),
    )
    try:
        await core.consultant.handle(msg("first", thread="b"))
        reply = await core.consultant.handle(msg("second", thread="b"))
        assert reply is not None and "daily token budget" in reply.text
        assert len(fake_anthropic.message_requests) == 1
    finally:
        await core.aclose()


async def test_prior_thread_context_is_taken_in_once(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    context = (
        ContextMessage("alice", "We store ticks in Postgres."),
        ContextMessage("bob", "It is slow."),
    )
    fake_anthropic.reply_text("Postgres is fine until it is not.")
    await core.consultant.handle(msg("Thoughts?", thread="ctx", prior_context=context))
    await core.consultant.handle(msg("And now?", thread="ctx", prior_context=context))
    last = texts(fake_anthropic.message_requests[-1].body)
    assert sum("We store ticks in Postgres." in t for t in last) == 1
    assert core.consultant.knows_thread("slack/T1/C1/ctx")
    assert not core.consultant.knows_thread("slack/T1/C1/never")


async def test_access_lists_are_enforced(tmp_path: Path, fake_anthropic: FakeAnthropic) -> None:
    core = build_core(
        make_settings(tmp_path, access={"allowed_channels": ["C1"], "allowed_users": ["U1"]}),
        make_secrets(fake_anthropic),
    )
    try:
        assert await core.consultant.handle(msg("hi", channel="C2")) is None
        assert await core.consultant.handle(msg("hi", user="U2")) is None
        assert await core.consultant.handle(msg("hi")) is not None
    finally:
        await core.aclose()


async def test_a_model_timeout_gives_a_clear_reply(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"timeout_seconds": 0.3, "max_retries": 0}),
        make_secrets(fake_anthropic),
    )
    try:
        fake_anthropic.latency = 2.0
        reply = await core.consultant.handle(msg("Will this time out?", thread="slow"))
        assert reply is not None and reply.kind == "error"
        assert "timeout" in reply.text and ends_with_sign_off_once(reply.text)
        turn = core.store.get_turn(reply.turn_id or 0)
        assert turn.status == "failed" and turn.text == "Will this time out?"
    finally:
        await core.aclose()


async def test_large_answers_are_streamed_over_sse(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"max_tokens": 32000}), make_secrets(fake_anthropic)
    )
    try:
        fake_anthropic.reply_tool_use("list_todos", {})
        fake_anthropic.reply_text("A long design review. " * 200)
        reply = await core.consultant.handle(msg("Review everything", thread="sse"))
        assert reply is not None and reply.text.startswith("A long design review.")
        assert [r.body.get("stream") for r in fake_anthropic.message_requests] == [True, True]
        result = fake_anthropic.message_requests[1].body["messages"][-1]["content"][0]
        assert (
            result["type"] == "tool_result" and result["content"] == "No todos in this thread yet."
        )
    finally:
        await core.aclose()


async def test_recovery_never_touches_turns_of_the_running_process(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    posted: list[str] = []

    class Outbox:
        platform = "slack"

        async def post(self, channel: str, thread: str | None, text: str) -> str:
            posted.append(text)
            return "ts"

    core = build_core(make_settings(tmp_path), make_secrets(fake_anthropic))
    try:
        fake_anthropic.latency = 0.3
        live = asyncio.create_task(core.consultant.handle(msg("Live question", thread="live")))
        await asyncio.sleep(0)  # one step: handle() stores the turn before its first await
        assert core.store.conn.execute("SELECT status FROM turns").fetchone()[0] == "pending"
        assert await core.consultant.recover_pending({"slack": Outbox()}) == 0
        reply = await live
        assert reply is not None and reply.kind == "answer"
        assert posted == []  # posting the live answer is its adapter's job, once
    finally:
        await core.aclose()


async def test_accepting_a_mention_joins_its_thread_before_any_turn(core: Core) -> None:
    mention = msg("Which feature store?", thread="t-join", event_id="e-join")
    assert not core.consultant.knows_thread(mention.thread_key)
    core.consultant.accept(mention)
    # A follow-up arriving now (before the mention's turn even started) is in a joined thread.
    assert core.consultant.knows_thread(mention.thread_key)


def test_forwarded_words_and_files_are_rendered_for_the_model() -> None:
    from bot.consultant import render_user_text
    from bot.events import Attachment, ForwardedMessage

    m = msg(
        "what do you think?",
        forwarded=(ForwardedMessage("We move ticks to ClickHouse\nnext week", author="Bob"),),
        attachments=(Attachment("design.pdf", "application/pdf", 250_000),),
    )
    text = render_user_text(m)
    assert text.startswith("what do you think?")
    assert "[Forwarded message from Bob]\n> We move ticks to ClickHouse\n> next week" in text
    assert "[Attached file: design.pdf (application/pdf, 244 KB)]" in text


async def test_a_message_with_nothing_to_read_gets_no_model_call(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    assert await core.consultant.handle(msg("   ", event_id="e-empty")) is None
    assert fake_anthropic.requests == []
