"""The on-call metrics: turn latency observed, model errors by cause, tool calls by tool and
outcome (made-up names bounded), queue depth and in-flight turns back at zero when idle."""

from __future__ import annotations

from prometheus_client import REGISTRY

from bot.app import Core
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_answered_turn_is_observed_in_the_latency_histogram(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    before = sample("archbot_turn_latency_seconds_count")
    fake_anthropic.reply_text("ok")
    await core.consultant.handle(msg("time me", thread="latency"))
    assert sample("archbot_turn_latency_seconds_count") == before + 1
    assert sample("archbot_turn_latency_seconds_sum") > 0
    assert sample("archbot_queue_depth") == 0
    assert sample("archbot_turns_in_flight") == 0


async def test_tool_calls_are_counted_by_tool_and_outcome(
    core: Core, fake_anthropic: FakeAnthropic
) -> None:
    ok = sample("archbot_tool_calls_total", tool="add_todo", outcome="ok")
    failed = sample("archbot_tool_calls_total", tool="update_todo", outcome="error")
    unknown = sample("archbot_tool_calls_total", tool="unknown", outcome="error")
    fake_anthropic.reply_tool_use("add_todo", {"title": "Benchmark Polars"})
    fake_anthropic.reply_tool_use("update_todo", {"number": 99, "status": "done"})
    fake_anthropic.reply_tool_use("made_up_tool_" + "x" * 40, {})
    fake_anthropic.reply_text("done")
    await core.consultant.handle(msg("track it", thread="tools"))
    assert sample("archbot_tool_calls_total", tool="add_todo", outcome="ok") == ok + 1
    assert sample("archbot_tool_calls_total", tool="update_todo", outcome="error") == failed + 1
    assert sample("archbot_tool_calls_total", tool="unknown", outcome="error") == unknown + 1
    assert (
        REGISTRY.get_sample_value(
            "archbot_tool_calls_total", {"tool": "made_up_tool_" + "x" * 40, "outcome": "error"}
        )
        is None
    )


async def test_model_errors_are_counted_by_cause(core: Core, fake_anthropic: FakeAnthropic) -> None:
    before = sample("archbot_model_errors_total", cause="error")
    fake_anthropic.reply_error(400, "invalid_request_error", "bad request")
    await core.consultant.handle(msg("fail me", thread="errors"))
    assert sample("archbot_model_errors_total", cause="error") == before + 1
