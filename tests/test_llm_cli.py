"""`archbot chat` against an Anthropic-compatible server, as the README's Ollama/vLLM/gateway
user runs it: only ANTHROPIC_BASE_URL set, a server that checks no key."""

from __future__ import annotations

from pathlib import Path

from bot.llm import PLACEHOLDER_API_KEY
from bot.signoff import SIGN_OFF
from tests.conftest import run_cli
from tests.fakes.fake_anthropic import FakeAnthropic

QUESTION = "Should our feature store be Feast or a pair of Postgres tables?"


def base_url_only(fake: FakeAnthropic, tmp_path: Path) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": fake.url,  # type: ignore[attr-defined]
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "archbot.db"),
    }


def test_only_a_base_url_is_answered_without_a_top_level_cache_control(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.gateway = True  # a backend that refuses unknown fields, relayed
    fake_anthropic.reply_tool_use("add_todo", {"title": "Compare Feast with two tables"})
    fake_anthropic.reply_text("Two Postgres tables until you need point-in-time joins.")
    env = base_url_only(fake_anthropic, tmp_path)
    first = run_cli(["chat", "--thread", "fs"], cwd=tmp_path, stdin=QUESTION, env=env)
    assert first.returncode == 0, first.stderr
    assert "Two Postgres tables" in first.stdout
    assert first.stdout.strip().endswith(SIGN_OFF) and first.stdout.count(SIGN_OFF) == 1
    assert "Traceback" not in first.stderr
    fake_anthropic.reply_text("Then Feast's offline store.")
    second = run_cli(["chat", "--thread", "fs"], cwd=tmp_path, stdin="And at 1 TB?", env=env)
    assert second.returncode == 0 and "Then Feast's offline store." in second.stdout
    requests = fake_anthropic.message_requests
    assert len(requests) == 3
    assert all("cache_control" not in r.body for r in requests)
    assert all(r.body["messages"][-1]["content"][-1].get("cache_control") for r in requests)
    assert {r.headers.get("Authorization") for r in requests} == {f"Bearer {PLACEHOLDER_API_KEY}"}


def test_a_200_error_object_gives_a_clear_reply_not_a_crash(
    tmp_path: Path, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_raw(
        200,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "litellm.NotFoundError: model 'claude-sonnet-5-5' not in model_list",
            },
        },
    )
    env = base_url_only(fake_anthropic, tmp_path)
    out = run_cli(["chat", "--thread", "err"], cwd=tmp_path, stdin=QUESTION, env=env)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "NoneType" not in out.stdout + out.stderr
    assert "model 'claude-sonnet-5-5' not in model_list" in out.stdout
    assert "saved" in out.stdout and out.stdout.strip().endswith(SIGN_OFF)
    assert "model_list" in out.stderr  # the operator's log line carries the gateway's message


def test_a_model_400_shows_the_api_message(tmp_path: Path, fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.reply_error(
        400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
    )
    env = base_url_only(fake_anthropic, tmp_path)
    out = run_cli(["chat", "--thread", "long"], cwd=tmp_path, stdin=QUESTION, env=env)
    assert out.returncode == 0, out.stderr
    assert "prompt is too long: 210000 tokens > 200000 maximum" in out.stdout
    assert "400" in out.stderr and "prompt is too long" in out.stderr
