"""The fake Messages API refuses what the real API refuses, so a broken history fails a test."""

from __future__ import annotations

import dataclasses
from typing import Any

import anthropic
import pytest

from bot.app import Core
from bot.events import IncomingMessage
from tests.conftest import FAKE_KEY
from tests.fakes.fake_anthropic import FakeAnthropic, request_problem

CACHE = {"type": "ephemeral"}


def text(t: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": t, **extra}


def use(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": "list_todos", "input": {}}


def result(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "no todos"}


def body(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-5-5", "max_tokens": 100, "messages": messages, **extra}


def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


VALID = body(
    [
        user(text("What is open?")),
        assistant(text("Let me look."), use("toolu_1"), use("toolu_2")),
        user(result("toolu_1"), result("toolu_2"), text("and the board?", cache_control=CACHE)),
        assistant(text("Nothing open.")),
        user(text("Thanks")),
    ],
    system=[text("You are an architect.", cache_control=CACHE)],
    tools=[{"name": "list_todos", "input_schema": {"type": "object"}}],
    tool_choice={"type": "auto"},
    stream=True,
)


def test_a_valid_history_with_tool_rounds_is_accepted() -> None:
    assert request_problem(VALID) is None
    assert request_problem(body([user(text("Hi")), assistant(text("Prefill:"))])) is None


@pytest.mark.parametrize(
    ("request_body", "says"),
    [
        (body([assistant(text("Hello")), user(text("Hi"))]), 'first message must use the "user"'),
        (
            body([user(text("a")), user(text("b"))]),
            'found multiple "user" roles in a row',
        ),
        (
            body([user(text("a")), assistant(text("b")), assistant(text("c"))]),
            'found multiple "assistant" roles in a row',
        ),
        (
            body([user(text("a")), assistant(use("toolu_1")), user(text("go on"))]),
            "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
        ),
        (
            body(
                [
                    user(text("a")),
                    assistant(use("toolu_1"), use("toolu_2")),
                    user(result("toolu_1")),
                ]
            ),
            "immediately after: toolu_2",
        ),
        (
            body([user(text("a")), assistant(use("toolu_1"))]),
            "`tool_use` ids were found without `tool_result` blocks",
        ),
        (
            body([user(text("a")), assistant(use("toolu_1")), user(text("x"), result("toolu_1"))]),
            "`tool_use` ids were found without `tool_result` blocks",
        ),
        (
            body([user(text("a")), assistant(text("b")), user(result("toolu_7"))]),
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_7",
        ),
        (
            body(
                [
                    user(text("a")),
                    assistant(use("toolu_1")),
                    user(result("toolu_1"), result("toolu_2")),
                ]
            ),
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_2",
        ),
        (body([user(text(""))]), "text content blocks must be non-empty"),
        (
            body(
                [
                    user(text("a")),
                    assistant(use("toolu_1")),
                    user({**result("toolu_1"), "content": [text("")]}),
                ]
            ),
            "messages.2.content.0.content.0.text: text content blocks must be non-empty",
        ),
        (body([user(text("a")), assistant(text("  \n")), user(text("b"))]), "non-whitespace text"),
        (body([user(text("a"))], system=[text("")]), "system.0.text: text content blocks"),
        (body([user()]), "all messages must have non-empty content"),
        (body([]), "at least one message is required"),
        (body([user(text("a"))], temperature_hint=0.2), "temperature_hint: Extra inputs are not"),
        ({"model": "m", "messages": [user(text("a"))]}, "max_tokens: Field required"),
        (
            body(
                [user(text("a", cache_control=CACHE), text("b", cache_control=CACHE))],
                system=[text("s", cache_control=CACHE)],
                tools=[{"name": "t", "input_schema": {}, "cache_control": CACHE}],
                cache_control=CACHE,
            ),
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
        (body([user(text("a")), assistant(text("b "))]), "cannot end with trailing whitespace"),
    ],
)
def test_what_the_real_api_refuses_is_refused(request_body: dict[str, Any], says: str) -> None:
    problem = request_problem(request_body)
    assert problem is not None and says in problem


async def test_the_sdk_gets_a_400_invalid_request_error_and_no_scripted_reply_is_used(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.reply_text("kept for the next valid request")
    client = anthropic.AsyncAnthropic(
        api_key=FAKE_KEY,
        base_url=fake_anthropic.url,  # type: ignore[attr-defined]
        max_retries=0,
    )
    try:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await client.messages.create(
                model="claude-sonnet-5-5",
                max_tokens=100,
                messages=[
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": [use("toolu_1")]},  # type: ignore[list-item]
                    {"role": "user", "content": "go on"},
                ],
            )
        answer = await client.messages.create(
            model="claude-sonnet-5-5", max_tokens=100, messages=[{"role": "user", "content": "a"}]
        )
    finally:
        await client.close()
    error = raised.value.body
    assert isinstance(error, dict) and error["error"]["type"] == "invalid_request_error"
    assert "tool_result" in error["error"]["message"]
    assert answer.content[0].text == "kept for the next valid request"  # type: ignore[union-attr]


async def test_a_gateway_relays_the_backend_refusing_a_top_level_cache_control(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.gateway = True
    client = anthropic.AsyncAnthropic(
        api_key=FAKE_KEY,
        base_url=fake_anthropic.url,  # type: ignore[attr-defined]
        max_retries=0,
    )
    try:
        with pytest.raises(anthropic.BadRequestError) as raised:
            await client.messages.create(
                model="local",
                max_tokens=100,
                messages=[{"role": "user", "content": "a"}],
                cache_control={"type": "ephemeral"},
            )
    finally:
        await client.close()
    assert "Unrecognized request argument supplied: cache_control" in str(raised.value)


async def test_a_broken_stored_history_fails_the_turn_with_the_api_message(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    # A tool call stored without its result (what a crash between the two would leave,
    # were they not written in one transaction) must not pass the fake unnoticed.
    first = IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread="broken",
        user="U1",
        user_name="Alice",
        text="What is open?",
        event_id="ev-broken-1",
    )
    fake_anthropic.reply_text("Nothing yet.")
    done = await core.consultant.handle(first)
    assert done is not None and done.kind == "answer"
    thread = core.store.get_thread(done.thread_key)
    assert thread is not None
    turn = core.store.start_turn(
        thread,
        event_key=None,
        user="U1",
        user_name="Alice",
        text="orphan",
        content=[{"type": "text", "text": "orphan"}],
    )
    core.store.add_message(thread.id, turn, "assistant", [use("toolu_orphan")])
    core.store.finish_turn(turn, status="done", reply="")
    second = dataclasses.replace(first, text="And now?", event_id="ev-broken-2")
    reply = await core.consultant.handle(second)
    assert reply is not None and reply.kind == "error"
    assert "toolu_orphan" in reply.text and "400" in reply.text
