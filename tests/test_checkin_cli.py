"""The check-in acceptance through the CLI: `archbot checkin list/run` and `archbot run`, as
real subprocesses on one database, against loopback Slack, Discord, GitHub and model."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.store import Store
from tests.conftest import clean_env, free_port, run_cli, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_github import FakeGitHub
from tests.fakes.fake_slack import TEAM_ID, FakeSlack, event_body, event_request
from tests.test_checkin_engine import CHANNEL, REPO, serve_github

NAME = "weekly-architecture"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    yield from serve_github()


def write_config(
    tmp: Path,
    *,
    platform: str = "slack",
    channel: str = CHANNEL,
    cron: str = "0 9 * * mon",
    tz: str = "Europe/London",
) -> Path:
    path = tmp / "archbot.toml"
    path.write_text(
        f"""
[[checkins]]
name = "{NAME}"
platform = "{platform}"
channel = "{channel}"
repo = "{REPO}"
cron = "{cron}"
timezone = "{tz}"
"""
    )
    return path


def env_for(
    tmp: Path, slack: FakeSlack, github: FakeGitHub, model: FakeAnthropic | None, **extra: str
) -> dict[str, str]:
    values = {
        "ARCHBOT_STORAGE__PATH": str(tmp / "a.db"),
        "ARCHBOT_SLACK__API_URL": f"{slack.url}/api/",
        "ARCHBOT_GITHUB__API_URL": github.url,  # type: ignore[attr-defined]
        "SLACK_BOT_TOKEN": "xoxb-test-not-real",
    }
    if model is not None:
        values["ANTHROPIC_API_KEY"] = "sk-test-not-real"
        values["ANTHROPIC_BASE_URL"] = model.url  # type: ignore[attr-defined]
    values.update(extra)
    return values


def top_level(slack: FakeSlack) -> list[Any]:
    return [m for m in slack.messages if m.channel == CHANNEL and m.thread_ts is None]


def seed_todo(tmp: Path) -> None:
    store = Store.open(tmp / "a.db")
    thread = store.ensure_thread(
        f"slack/{TEAM_ID}/{CHANNEL}/1700000000.000200",
        platform="slack",
        workspace=TEAM_ID,
        channel=CHANNEL,
        thread="1700000000.000200",
        channel_key=f"slack/{TEAM_ID}/{CHANNEL}",
    )
    store.add_todo(thread.id, "Decide on the feature store")
    store.close()


def test_list_run_again_and_force_as_a_new_user_would(
    tmp_path: Path,
    fake_slack: FakeSlack,
    github: FakeGitHub,
    fake_anthropic: FakeAnthropic,
) -> None:
    write_config(tmp_path)
    env = env_for(tmp_path, fake_slack, github, fake_anthropic)
    seed_todo(tmp_path)
    listed = run_cli(["checkin", "list"], cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"{NAME}: slack channel {CHANNEL}" in listed.stdout
    assert (
        "next: " in listed.stdout
        and "(Europe/London)" in listed.stdout
        and "last: never run" in listed.stdout
    )
    fake_anthropic.reply_text("Risk: the Kafka consumer has no backpressure.")
    first = run_cli(["checkin", "run", NAME], cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "posted for" in first.stdout and "https://acme.slack.com/archives/" in first.stdout
    [message] = top_level(fake_slack)
    assert (
        "Stream ticks through Kafka" in message.text
        and "Initial pandas prototype" not in message.text
    )
    assert "Decide on the feature store" in message.text and "no backpressure" in message.text
    assert message.text.rstrip().endswith("Done. What are we tackling next?")
    again = run_cli(["checkin", "run", NAME], cwd=tmp_path, env=env)
    assert again.returncode == 0 and "already posted" in again.stdout
    assert len(top_level(fake_slack)) == 1
    forced = run_cli(["checkin", "run", NAME, "--force"], cwd=tmp_path, env=env)
    assert forced.returncode == 0 and "posted for" in forced.stdout
    assert len(top_level(fake_slack)) == 2
    listed = run_cli(["checkin", "list"], cwd=tmp_path, env=env)
    assert "last: posted: https://acme.slack.com/archives/" in listed.stdout


def test_two_processes_running_one_check_in_at_once_post_once(
    tmp_path: Path,
    fake_slack: FakeSlack,
    github: FakeGitHub,
) -> None:
    write_config(tmp_path)
    env = clean_env(**env_for(tmp_path, fake_slack, github, None))
    Store.open(tmp_path / "a.db").close()  # migrated, so both start at the claim
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bot", "checkin", "run", NAME],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outs = sorted(out for out, _ in results)
    assert sum(o.startswith(f"{NAME}: posted for") for o in outs) == 1
    assert sum("already" in o for o in outs) == 1
    assert len(top_level(fake_slack)) == 1


def test_a_channel_whose_posts_keep_failing_exits_non_zero_and_list_shows_it(
    tmp_path: Path,
    fake_slack: FakeSlack,
    github: FakeGitHub,
) -> None:
    write_config(tmp_path)
    env = env_for(tmp_path, fake_slack, github, None)
    fake_slack.fail_next("chat.postMessage", 200, error="channel_not_found", count=20)
    result = run_cli(["checkin", "run", NAME], cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"archbot: checkin {NAME}: posting to slack channel {CHANNEL} failed after 4 attempts"
    )
    assert "channel_not_found" in lines[-1]
    assert f"check-in {NAME}" in result.stderr and "ERROR" in result.stderr.upper()
    listed = run_cli(["checkin", "list"], cwd=tmp_path, env=env)
    assert "last: failed: " in listed.stdout and "channel_not_found" in listed.stdout


def test_offline_the_activity_still_posts(
    tmp_path: Path,
    fake_slack: FakeSlack,
    github: FakeGitHub,
) -> None:
    write_config(tmp_path)
    result = run_cli(
        ["checkin", "run", NAME], cwd=tmp_path, env=env_for(tmp_path, fake_slack, github, None)
    )
    assert result.returncode == 0, result.stderr
    [message] = top_level(fake_slack)
    assert "Stream ticks through Kafka" in message.text and "needs a model" in message.text


def test_a_discord_check_in_posts_without_archbot_run(
    tmp_path: Path,
    fake_slack: FakeSlack,
    fake_discord: FakeDiscord,
    github: FakeGitHub,
) -> None:
    write_config(tmp_path, platform="discord", channel=fake_discord.channel_id)
    env = env_for(
        tmp_path,
        fake_slack,
        github,
        None,
        DISCORD_TOKEN=fake_discord.valid_token,
        ARCHBOT_DISCORD__API_URL=fake_discord.url,
    )
    result = run_cli(["checkin", "run", NAME], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (
        f"https://discord.com/channels/{fake_discord.guild_id}/{fake_discord.channel_id}/"
        in result.stdout
    )
    [starter] = fake_discord.messages[fake_discord.channel_id]
    assert fake_discord.channels[starter["id"]]["type"] == 11
    assert fake_discord.identifies == []


class Running:
    """`archbot run` (Slack, HTTP mode) as a subprocess with its log in a file."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = tmp / f"run-{self.port}.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=clean_env(
                **env,
                ARCHBOT_SLACK__ENABLED="true",
                ARCHBOT_SLACK__MODE="http",
                ARCHBOT_SLACK__PORT=str(self.port),
                SLACK_SIGNING_SECRET="test-secret-not-real",
            ),
        )

    def text(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, needle: str) -> str:
        return wait_until(
            lambda: needle in self.text() and self.text(),
            f"{needle!r} in the log",
            proc=self.proc,
            within=30,
        )

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(30)
        self.log.close()
        return code


def test_archbot_run_schedules_every_minute_check_in_for_the_next_minute(
    tmp_path: Path,
    fake_slack: FakeSlack,
    github: FakeGitHub,
) -> None:
    write_config(tmp_path, cron="* * * * *", tz="UTC")
    bot = Running(tmp_path, env_for(tmp_path, fake_slack, github, None))
    try:
        log = bot.wait_for(f"check-in scheduled: checkin:{NAME} next at ")
        started = datetime.now(UTC)
        shown = log.split(f"checkin:{NAME} next at ", 1)[1].split()[0]
        next_fire = datetime.fromisoformat(shown)
        assert next_fire.second == 0 and timedelta(0) < next_fire - started + timedelta(
            seconds=5
        ) <= timedelta(seconds=65)
        bot.wait_for(
            "check-in catch-up at start: 0 made up, 0 skipped"
        )  # never ran: nothing made up
    finally:
        assert bot.stop() == 0
    assert top_level(fake_slack) == []


def test_a_run_missed_while_down_is_made_up_once_at_start(
    tmp_path: Path,
    fake_slack: FakeSlack,
    github: FakeGitHub,
) -> None:
    fired = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
    write_config(tmp_path, cron=f"{fired.minute} {fired.hour} * * *", tz="UTC")
    store = Store.open(tmp_path / "a.db")  # it posted yesterday, then the bot was down today
    yesterday = fired - timedelta(days=1)
    run_id, _ = store.claim_checkin_run(
        NAME, f"{yesterday:%Y-%m-%d %H:%M} UTC", yesterday.isoformat(), trigger="schedule"
    )
    assert run_id is not None
    store.finish_checkin_run(run_id, status="posted", attempts=1, message_id="1.0")
    store.close()
    env = env_for(tmp_path, fake_slack, github, None)
    for start in range(2):  # killed and started again: made up exactly once
        bot = Running(tmp_path, env)
        try:
            expected = "1 made up" if start == 0 else "0 made up"
            bot.wait_for(f"check-in catch-up at start: {expected}, 0 skipped")
        finally:
            assert bot.stop() == 0
    [message] = top_level(fake_slack)
    assert f"{fired:%Y-%m-%d %H:%M} UTC" in message.text


def test_a_reply_in_the_check_in_thread_is_answered_without_a_mention(
    tmp_path: Path, fake_slack: FakeSlack, github: FakeGitHub, fake_anthropic: FakeAnthropic
) -> None:
    write_config(tmp_path)
    env = env_for(tmp_path, fake_slack, github, fake_anthropic)
    fake_anthropic.reply_text("Suggested focus: backpressure in the Kafka consumer.")
    assert run_cli(["checkin", "run", NAME], cwd=tmp_path, env=env).returncode == 0
    [checkin] = top_level(fake_slack)
    bot = Running(tmp_path, env)
    try:
        bot.wait_for("archbot ready")
        fake_anthropic.reply_text("Use a bounded queue between the consumer and the writer.")
        body = event_body(
            "message_thread_followup",
            channel=CHANNEL,
            thread_ts=checkin.ts,
            text="How do we start?",
        )
        raw, headers = event_request(body, "test-secret-not-real")
        request = urllib.request.Request(
            f"http://127.0.0.1:{bot.port}/slack/events", data=raw, headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        answer = wait_until(
            lambda: [
                m for m in fake_slack.thread_messages(CHANNEL, checkin.ts) if m.ts != checkin.ts
            ],
            "the answer in the check-in thread",
            proc=bot.proc,
        )
        assert "bounded queue" in answer[0].text
    finally:
        assert bot.stop() == 0
    request_messages = fake_anthropic.message_requests[-1].body["messages"]
    assert "Stream ticks through Kafka" in str(request_messages[0])  # the check-in starts it
    assert "backpressure in the Kafka consumer" in str(request_messages[1])
    assert "How do we start?" in str(request_messages[-1])
