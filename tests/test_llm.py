"""The model client against the loopback fake: credentials, cache breakpoints, and every way a
gateway or local server can fail, each ending in a clear ModelUnavailable."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from bot.app import Core, build_core
from bot.errors import ModelUnavailable
from bot.events import IncomingMessage
from bot.llm import (
    PLACEHOLDER_API_KEY,
    ModelClient,
    clean_reason,
    make_anthropic_client,
    with_cache_breakpoint,
)
from bot.settings import LLMSettings, Secrets
from bot.store import Store
from tests.conftest import FAKE_KEY, free_port, make_secrets, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic

CACHE = {"type": "ephemeral"}
USER = [{"role": "user", "content": [{"type": "text", "text": "Kafka or Redis Streams?"}]}]
ERROR_OBJECT = {
    "type": "error",
    "error": {"type": "api_error", "message": "litellm.APIConnectionError: backend is down"},
}


def fake_url(fake: FakeAnthropic) -> str:
    return str(fake.url)  # type: ignore[attr-defined]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = Store.open(str(tmp_path / "llm.db"))
    try:
        yield opened
    finally:
        opened.close()


def model_client(
    store: Store, fake: FakeAnthropic, *, key: str | None = FAKE_KEY, **client: Any
) -> ModelClient:
    secrets = make_secrets(fake, key=key)
    return ModelClient(LLMSettings(max_retries=0), secrets, store, **client)


async def sink(text: str) -> None:
    """A streaming consumer that keeps nothing (the request is streamed because it exists)."""


# cache breakpoints ------------------------------------------------------------------


def test_breakpoint_goes_on_a_copy_of_the_last_block() -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "Question?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Answer."}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3 todos"},
                {"type": "text", "text": "And now?"},
            ],
        },
    ]
    before = copy.deepcopy(history)
    marked = with_cache_breakpoint(history)
    assert history == before  # history objects are reused by the caller
    assert marked[:2] == history[:2] and marked[0] is history[0]
    assert marked[-1]["content"][-1] == {"type": "text", "text": "And now?", "cache_control": CACHE}
    assert "cache_control" not in marked[-1]["content"][0]


def test_breakpoint_skips_blocks_that_cannot_carry_one_and_accepts_string_content() -> None:
    thinking_last = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Why?"},
                {"type": "thinking", "thinking": "...", "signature": "x"},
            ],
        }
    ]
    marked = with_cache_breakpoint(thinking_last)
    assert marked[0]["content"][0]["cache_control"] == CACHE
    assert "cache_control" not in marked[0]["content"][1]
    plain = with_cache_breakpoint([{"role": "user", "content": "Hi"}])
    assert plain[0]["content"] == [{"type": "text", "text": "Hi", "cache_control": CACHE}]
    assert with_cache_breakpoint([]) == []


async def test_no_top_level_cache_control_so_a_strict_gateway_answers(
    store: Store, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.gateway = True  # refuses unknown fields, as a backend behind LiteLLM does
    fake_anthropic.reply_text("Redis Streams, until you need replay beyond a day.")
    model = model_client(store, fake_anthropic)
    try:
        result = await model.complete(system="You are an architect.", messages=USER)
    finally:
        await model.aclose()
    assert result.text.startswith("Redis Streams")
    body = fake_anthropic.message_requests[0].body
    assert "cache_control" not in body
    assert body["messages"][-1]["content"][-1]["cache_control"] == CACHE
    assert body["system"][0]["cache_control"] == CACHE
    assert "cache_control" not in USER[-1]["content"][-1]


# credentials ------------------------------------------------------------------------


def test_placeholder_key_only_with_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    local = make_anthropic_client(
        Secrets(ANTHROPIC_BASE_URL="http://127.0.0.1:11434"),  # type: ignore[call-arg]
        max_retries=0,
        timeout=5,
    )
    assert local.api_key == PLACEHOLDER_API_KEY
    nothing = make_anthropic_client(Secrets(), max_retries=0, timeout=5)
    assert nothing.api_key is None and "api.anthropic.com" in str(nothing.base_url)
    real = make_anthropic_client(
        Secrets(ANTHROPIC_API_KEY=FAKE_KEY),
        max_retries=0,
        timeout=5,  # type: ignore[call-arg]
    )
    assert real.api_key == FAKE_KEY
    # A gateway token the SDK finds by itself is kept, not shadowed by the placeholder.
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "gateway-token-not-real")
    gateway = make_anthropic_client(
        Secrets(ANTHROPIC_BASE_URL="http://127.0.0.1:4000"),  # type: ignore[call-arg]
        max_retries=0,
        timeout=5,
    )
    assert gateway.api_key is None and gateway.auth_token == "gateway-token-not-real"


async def test_base_url_without_a_key_sends_the_placeholder_and_is_answered(
    store: Store, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("Start with a managed Kafka.")
    model = model_client(store, fake_anthropic, key=None)
    try:
        result = await model.complete(system="s", messages=USER, on_text=sink)
    finally:
        await model.aclose()
    assert result.text == "Start with a managed Kafka."
    headers = fake_anthropic.message_requests[0].headers
    assert headers.get("Authorization") == f"Bearer {PLACEHOLDER_API_KEY}"


async def test_many_calls_at_once_are_all_answered_over_the_aiohttp_transport(
    store: Store, fake_anthropic: FakeAnthropic
) -> None:
    # The client is built on the SDK's aiohttp transport (httpx's pool costs O(connections)
    # per request); concurrent calls each get their own answer, plain and streamed alike.
    fake_anthropic.latency = 0.2  # all 40 are in flight together
    model = model_client(store, fake_anthropic)
    assert isinstance(model.client, anthropic.AsyncAnthropic)
    assert isinstance(model.client._client, anthropic.DefaultAioHttpClient)
    # Looked up once at start: the SDK would send each first request's lookup to a thread.
    assert model.client._platform is not None
    try:
        results = await asyncio.gather(
            *(
                model.complete(
                    system="s",
                    messages=[{"role": "user", "content": [{"type": "text", "text": f"q{i}"}]}],
                    on_text=sink if i % 2 else None,
                )
                for i in range(40)
            )
        )
    finally:
        await model.aclose()
    assert len(fake_anthropic.message_requests) == 40
    assert all(r.text for r in results)


def test_the_model_client_honours_a_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    client = make_anthropic_client(
        Secrets(ANTHROPIC_API_KEY=FAKE_KEY),  # type: ignore[call-arg]
        max_retries=0,
        timeout=5,
    )
    proxies = [getattr(t, "proxy", None) for t in client._client._mounts.values()]
    assert [str(p.url) for p in proxies if p is not None] == ["http://127.0.0.1:3128"]


def test_sdk_spans_only_when_a_tracer_provider_records_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace

    secrets = Secrets(ANTHROPIC_API_KEY=FAKE_KEY)  # type: ignore[call-arg]
    quiet = make_anthropic_client(secrets, max_retries=0, timeout=5)
    assert quiet.open_telemetry["traces"]["enabled"] is False  # nobody would record them
    # An operator's instrumentation installs a provider before the bot starts.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: trace.NoOpTracerProvider())
    traced = make_anthropic_client(secrets, max_retries=0, timeout=5)
    assert traced.open_telemetry["traces"]["enabled"] is True


async def test_a_model_nobody_listens_for_is_a_connection_error(store: Store) -> None:
    secrets = Secrets(  # type: ignore[call-arg]
        ANTHROPIC_API_KEY=FAKE_KEY, ANTHROPIC_BASE_URL=f"http://127.0.0.1:{free_port()}"
    )
    model = ModelClient(LLMSettings(max_retries=0), secrets, store)
    try:
        with pytest.raises(ModelUnavailable) as raised:
            await model.complete(system="s", messages=USER)
    finally:
        await model.aclose()
    assert raised.value.cause == "connection"


async def test_an_sdk_type_error_is_model_unavailable_logged_with_its_type(
    store: Store, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    # A client with no credential at all: the SDK raises TypeError before any request.
    bare = anthropic.AsyncAnthropic(base_url=fake_url(fake_anthropic), max_retries=0)
    model = model_client(store, fake_anthropic, client=bare)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.llm"):
            with pytest.raises(ModelUnavailable) as raised:
                await model.complete(system="s", messages=USER)
    finally:
        await model.aclose()
    assert raised.value.cause == "auth" and "ANTHROPIC_API_KEY" in str(raised.value)
    assert fake_anthropic.message_requests == []
    assert any("TypeError" in r.getMessage() for r in caplog.records)


# what a gateway may answer -----------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_200_error_object_is_model_unavailable_with_the_gateway_message(
    store: Store, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture, streamed: bool
) -> None:
    fake_anthropic.reply_raw(200, ERROR_OBJECT)
    model = model_client(store, fake_anthropic)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.llm"):
            with pytest.raises(ModelUnavailable) as raised:
                await model.complete(system="s", messages=USER, on_text=sink if streamed else None)
    finally:
        await model.aclose()
    assert raised.value.cause == "overloaded"  # api_error: the service's side
    assert "backend is down" in str(raised.value)
    assert any(
        "200" in r.getMessage() and "backend is down" in r.getMessage() for r in caplog.records
    )
    assert store.conn.execute("select count(*) from usage").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("body", "content_type", "streamed", "expected"),
    [
        ("<html><h1>502 Bad Gateway</h1></html>", "text/html", False, "not a message"),
        ("<html><h1>502 Bad Gateway</h1></html>", "text/html", True, "without a stream"),
        ('{"id": "msg_1", "type": "mess', "application/json", False, "not a valid"),
        ("data: {broken\n\n", "text/event-stream", True, "malformed"),
    ],
)
async def test_garbage_from_the_service_is_model_unavailable(
    store: Store,
    fake_anthropic: FakeAnthropic,
    caplog: pytest.LogCaptureFixture,
    body: str,
    content_type: str,
    streamed: bool,
    expected: str,
) -> None:
    fake_anthropic.reply_raw(200, body, content_type=content_type)
    model = model_client(store, fake_anthropic)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.llm"):
            with pytest.raises(ModelUnavailable) as raised:
                await model.complete(system="s", messages=USER, on_text=sink if streamed else None)
    finally:
        await model.aclose()
    assert expected in str(raised.value)
    assert [r for r in caplog.records if r.levelno == logging.WARNING]


def sse(*events: dict[str, Any]) -> str:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


async def test_a_stream_without_usage_is_a_clear_model_unavailable(
    store: Store, fake_anthropic: FakeAnthropic
) -> None:
    # The SDK's stream accumulator cannot take a stream without usage; the turn still
    # gets a reply that says what happened (a plain response without usage is fine).
    start = {"id": "m", "type": "message", "role": "assistant", "model": "x", "content": []}
    fake_anthropic.reply_raw(
        200,
        sse(
            {"type": "message_start", "message": {**start, "stop_reason": None}},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            },
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
            {"type": "message_stop"},
        ),
        content_type="text/event-stream",
    )
    model = model_client(store, fake_anthropic)
    try:
        with pytest.raises(ModelUnavailable) as raised:
            await model.complete(system="s", messages=USER, on_text=sink)
    finally:
        await model.aclose()
    assert "incomplete or malformed response (AttributeError)" in str(raised.value)


async def test_missing_usage_counts_as_zero(store: Store, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply_raw(
        200,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "local",
            "content": [{"type": "text", "text": "Measure first."}],
            "stop_reason": "end_turn",
        },
    )
    model = model_client(store, fake_anthropic)
    try:
        result = await model.complete(system="s", messages=USER, user="U1")
    finally:
        await model.aclose()
    assert result.text == "Measure first."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (0, 0)
    assert store.conn.execute("select count(*) from usage").fetchone()[0] == 1


async def test_a_400_carries_the_api_message_and_logs_the_status_without_the_key(
    store: Store, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    fake_anthropic.reply_error(
        400,
        "invalid_request_error",
        f"prompt is too long: 210000 tokens > 200000 maximum (key {FAKE_KEY})",
    )
    model = model_client(store, fake_anthropic)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.llm"):
            with pytest.raises(ModelUnavailable) as raised:
                await model.complete(system="s", messages=USER)
    finally:
        await model.aclose()
    assert "prompt is too long: 210000 tokens > 200000 maximum" in str(raised.value)
    assert FAKE_KEY not in str(raised.value)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("400" in line and "prompt is too long" in line for line in lines)
    assert not any(FAKE_KEY in line for line in lines)


def test_a_service_message_is_one_capped_line_without_secrets() -> None:
    hostile = "bad\n\x1b[31m <b>token</b> xoxb-1234567890-abcdef sk-ant-api03-AAAAAAAA " + "x" * 500
    cleaned = clean_reason(hostile, ["my-own-secret-value"])
    assert "\n" not in cleaned and "\x1b" not in cleaned and "<b>" not in cleaned
    assert "xoxb-1234567890" not in cleaned and "sk-ant-api03" not in cleaned
    assert len(cleaned) <= 200
    assert clean_reason("leaked my-own-secret-value here", ["my-own-secret-value"]) == (
        "leaked [redacted] here"
    )


# through the consultant ---------------------------------------------------------------


def msg(text: str, thread: str = "t1") -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread=thread,
        user="U1",
        user_name="Alice",
        text=text,
        event_id=f"ev-{thread}-{text[:16]}",
    )


async def test_a_model_400_shows_the_api_message_in_the_reply(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_error(
        400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
    )
    reply = await core.consultant.handle(msg("Review our whole monorepo"))
    assert reply is not None and reply.kind == "error"
    assert "prompt is too long: 210000 tokens > 200000 maximum" in reply.text


async def test_an_empty_text_block_from_a_gateway_is_not_replayed(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    # Gateways translating from OpenAI-style backends often put "" before a tool call;
    # the strict fake, like the API, refuses it when it comes back in the next request.
    fake_anthropic.reply_raw(
        200,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "local",
            "content": [
                {"type": "text", "text": ""},
                {"type": "tool_use", "id": "toolu_9", "name": "list_todos", "input": {}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5},
        },
    )
    fake_anthropic.reply_text("No todos yet.")
    reply = await core.consultant.handle(msg("What is open?", thread="empty"))
    assert reply is not None and reply.kind == "answer", reply.text
    assert reply.text.startswith("No todos yet.")
    replayed = fake_anthropic.message_requests[1].body["messages"][-2]
    assert replayed["content"] == [
        {"type": "tool_use", "id": "toolu_9", "name": "list_todos", "input": {}}
    ]


async def test_a_gateway_turn_through_the_core_uses_block_breakpoints(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.gateway = True
    built = build_core(make_settings(tmp_path), make_secrets(fake_anthropic, key=None))
    try:
        fake_anthropic.reply_tool_use("add_todo", {"title": "Pick a broker"})
        fake_anthropic.reply_text("Added it.")
        first = await built.consultant.handle(msg("Track the broker choice", thread="gw"))
        second = await built.consultant.handle(msg("Thanks, and now?", thread="gw"))
    finally:
        await built.aclose()
    assert first is not None and first.kind == "answer", first.text
    assert second is not None and second.kind == "answer", second.text
    assert len(fake_anthropic.message_requests) == 3
    assert all("cache_control" not in r.body for r in fake_anthropic.message_requests)
