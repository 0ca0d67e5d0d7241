"""Budgets count what is billed, and are checked before every model call of a turn."""

from __future__ import annotations

from pathlib import Path

from bot.app import build_core
from bot.signoff import ends_with_sign_off_once
from bot.store import UsageRecord, day_start
from bot.tools import ToolContext
from bot.toolset import tools
from tests.conftest import make_secrets, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg


def _usage(input_tokens: int, output_tokens: int, read: int, write: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write,
    }


async def test_cache_tokens_count_at_their_price_ratio(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"daily_token_budget_per_user": 2000}),
        make_secrets(fake_anthropic),
    )
    try:
        # 100 fresh + 100 output + 10,000 cache reads (0.1x) + 400 cache writes (1.25x) = 1,700.
        fake_anthropic.reply_text("Cached answer.", usage=_usage(100, 100, 10_000, 400))
        await core.consultant.handle(msg("first", thread="cache"))
        assert core.store.tokens_used_since("U1", day_start()) == 1700
        fake_anthropic.reply_text("Still within budget.")
        second = await core.consultant.handle(msg("second", thread="cache"))
        assert second is not None and second.kind == "answer"
    finally:
        await core.aclose()


async def test_the_budget_stops_a_turn_between_tool_rounds(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"daily_token_budget_per_user": 100}),
        make_secrets(fake_anthropic),
    )
    try:
        # The fake bills the request's size: the first round alone is over 100 tokens.
        fake_anthropic.reply_tool_use("list_todos", {})
        fake_anthropic.reply_text("Never asked for.")
        reply = await core.consultant.handle(msg("Plan the rollout", thread="mid"))
        assert reply is not None and reply.kind == "error"
        assert "daily token budget" in reply.text and ends_with_sign_off_once(reply.text)
        assert len(fake_anthropic.message_requests) == 1  # the second round was not sent
        assert core.store.get_turn(reply.turn_id or 0).status == "failed"
    finally:
        await core.aclose()


async def test_delegation_checks_the_budget_first(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    core = build_core(
        make_settings(tmp_path, llm={"daily_token_budget_per_user": 1000}),
        make_secrets(fake_anthropic),
    )
    try:
        thread = core.store.ensure_thread(
            "console/b",
            platform="console",
            workspace="local",
            channel="console",
            thread="b",
            channel_key="console/local/console",
        )
        core.store.record_usage(
            UsageRecord("claude-sonnet-4", "chat", 800, 300, 0, 0, 10, 0.0),
            thread_id=thread.id,
            channel_key=thread.channel_key,
            user="me",
        )
        ctx = ToolContext(
            store=core.store,
            settings=core.settings,
            secrets=core.secrets,
            thread=thread,
            user="me",
            services=core.services,
        )
        text, is_error = await tools.call("delegate_to_software_architect", {"task": "Plan"}, ctx)
        assert is_error and "daily token budget" in text
        assert fake_anthropic.message_requests == []
    finally:
        await core.aclose()
