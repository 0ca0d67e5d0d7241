"""Logs (text/JSON, correlation ids, secrets redacted) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import Iterator

import pytest

from bot.app import Core
from bot.consultant import correlation_id
from bot.logs import configure_logging
from bot.metrics import start_metrics_server
from bot.settings import LogSettings, Secrets
from tests.conftest import free_port
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.test_consultant import msg


def read_url(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_json_logs_carry_the_correlation_id_and_never_a_secret(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "sk-ant-test-should-never-appear"
    configure_logging(LogSettings(format="json", level="info"), Secrets(ANTHROPIC_API_KEY=secret))  # type: ignore[call-arg]
    token = correlation_id.set("turn-42")
    try:
        logging.getLogger("bot.test").info("calling the model with key %s", secret)
    finally:
        correlation_id.reset(token)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["correlation_id"] == "turn-42"
    assert record["level"] == "info" and record["logger"] == "bot.test"
    assert secret not in line and "[redacted]" in record["message"]


async def test_metrics_count_turns_and_tokens(core: Core, fake_anthropic: FakeAnthropic) -> None:
    port = free_port()
    stop = start_metrics_server(port, addr="127.0.0.1")
    try:
        fake_anthropic.reply_text("ok", usage={"input_tokens": 7, "output_tokens": 3})
        await core.consultant.handle(msg("count me", thread="metrics"))
        body = await asyncio.to_thread(read_url, f"http://127.0.0.1:{port}/metrics")
        assert 'archbot_turns_total{outcome="answered"}' in body
        assert 'archbot_model_tokens_total{kind="output"}' in body
    finally:
        stop()
