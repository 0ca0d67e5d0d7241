"""Slack and Discord from one core: `archbot run` with both adapters, as a real process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from bot.signoff import SIGN_OFF
from tests.conftest import FAKE_KEY, clean_env, free_port, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_slack import BOT_USER_ID, FakeSlack, event_body, event_request

SIGNING_SECRET = "both-platforms-secret-not-real"


def test_one_process_answers_in_slack_and_discord_with_separate_memories(
    tmp_path: Path,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    fake_discord: FakeDiscord,
) -> None:
    slack, discord = fake_slack, fake_discord
    port = free_port()
    env = clean_env(
        ARCHBOT_SLACK__ENABLED="true",
        ARCHBOT_SLACK__MODE="http",
        ARCHBOT_SLACK__PORT=str(port),
        ARCHBOT_SLACK__API_URL=f"{slack.url}/api/",
        SLACK_BOT_TOKEN="xoxb-test-not-real",
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        ARCHBOT_DISCORD__ENABLED="true",
        ARCHBOT_DISCORD__API_URL=discord.url,
        DISCORD_TOKEN=discord.valid_token,
        ANTHROPIC_BASE_URL=fake_anthropic.url,  # type: ignore[attr-defined]
        ANTHROPIC_API_KEY=FAKE_KEY,
        ARCHBOT_STORAGE__PATH=str(tmp_path / "archbot.db"),
    )
    log_path = tmp_path / "archbot.log"
    log = log_path.open("w")  # a file, not a pipe: a full pipe would block the bot
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=log,
        text=True,
    )
    try:
        wait_until(lambda: discord.connected, "the Discord gateway session", proc=proc)

        def slack_listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until(slack_listening, "the Slack endpoint", proc=proc)

        fake_anthropic.reply_text("Slack answer: use Feast for online features.")
        body = event_body("app_mention", text=f"<@{BOT_USER_ID}> feature store for Slack?")
        raw, headers = event_request(body, SIGNING_SECRET)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/slack/events", data=raw, headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        channel, ts = body["event"]["channel"], body["event"]["ts"]
        wait_until(lambda: slack.thread_texts(channel, ts), "the Slack answer", proc=proc)

        fake_anthropic.reply_text("Discord answer: partition ticks by day.")
        mention = discord.message(
            f"<@{discord.bot_id}> tick storage for Discord?", mention_bot=True
        )
        wait_until(lambda: discord.sent_messages(mention["id"]), "the Discord answer", proc=proc)

        (slack_answer,) = slack.thread_texts(channel, ts)
        (discord_answer,) = discord.sent_messages(mention["id"])
        assert slack_answer.startswith("Slack answer") and slack_answer.endswith(SIGN_OFF)
        assert discord_answer["content"].startswith("Discord answer")
        assert discord_answer["content"].endswith(SIGN_OFF)
        slack_request, discord_request = fake_anthropic.message_requests
        assert "feature store for Slack?" not in str(discord_request.body["messages"])
        assert slack_request.body["system"] == discord_request.body["system"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
    output = log_path.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "ready" in output and "(slack, discord)" in output
    assert "Traceback" not in output and " ERROR " not in output  # a clean start and stop
    assert "xoxb-test-not-real" not in output and discord.valid_token not in output
