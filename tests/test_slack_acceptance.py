"""Issue 3 acceptance, tried as a new user would: `archbot run` (a real subprocess) in HTTP mode
against a loopback Slack Web API and a scripted model, driven by signed Events API requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.signoff import SIGN_OFF
from tests.conftest import free_port, run_cli, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import FakeSlack, SlackMessage, event_body
from tests.slack_run import SIGNING_SECRET, SlackRun, serving_model, serving_slack


@pytest.fixture(scope="module")
def model() -> Iterator[FakeAnthropic]:
    with serving_model() as fake:
        yield fake


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with serving_slack() as fake:
        yield fake


@pytest.fixture(scope="module")
def archbot(
    tmp_path_factory: pytest.TempPathFactory, slack: FakeSlack, model: FakeAnthropic
) -> Iterator[SlackRun]:
    bot = SlackRun(tmp_path_factory.mktemp("archbot"), slack, model)
    try:
        yield bot
    finally:
        bot.stop_cleanly(tracebacks=True)


def replies(
    slack: FakeSlack, channel: str, thread_ts: str | None, count: int = 1
) -> list[SlackMessage]:
    """Wait for `count` finished messages, posted or streamed, in a thread (None: top level)."""

    def found() -> list[SlackMessage]:
        messages = slack.thread_messages(channel, thread_ts)
        return messages if len(messages) >= count else []

    return wait_until(found, what=f"{count} replies in {channel}/{thread_ts}")


def barrier(archbot: SlackRun, channel: str) -> None:
    """A fresh DM, answered after the events under test had their chance to be (wrongly) answered."""
    assert archbot.send(event_body("message_im", channel=channel, text="barrier"))[0] == 200
    replies(archbot.slack, channel, None)


def test_mention_is_acknowledged_within_a_second_and_answered_in_its_thread(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    model.latency = 1.2  # a slow model must not delay the acknowledgement
    try:
        body = event_body("app_mention")
        status, elapsed = archbot.send(body)
        assert status == 200
        assert elapsed < 1.0
        [reply] = replies(slack, "C0GENERAL", body["event"]["ts"])
    finally:
        model.latency = 0.0
    assert reply.text.endswith(SIGN_OFF)
    assert "Redis or Feast" in reply.text


def test_forged_and_old_signatures_get_401_and_no_reply(
    archbot: SlackRun, slack: FakeSlack
) -> None:
    assert archbot.send(event_body("app_mention", channel="C0FORGED"), secret="forged")[0] == 401
    old = int(time.time()) - 600
    assert archbot.send(event_body("app_mention", channel="C0OLD"), timestamp=old)[0] == 401
    barrier(archbot, "D0BARRIER1")
    assert not slack.messages_in("C0FORGED")
    assert not slack.messages_in("C0OLD")


def test_the_same_event_delivered_three_times_is_answered_once(
    archbot: SlackRun, slack: FakeSlack
) -> None:
    body = event_body("app_mention", channel="C0TRIPLE")
    assert [archbot.send(body, retry=r)[0] for r in (None, 1, 2)] == [200, 200, 200]
    replies(slack, "C0TRIPLE", body["event"]["ts"])
    barrier(archbot, "D0BARRIER2")
    assert len(slack.messages_in("C0TRIPLE")) == 1


def test_thread_follow_up_without_mention_is_answered_and_bots_are_ignored(
    archbot: SlackRun, slack: FakeSlack
) -> None:
    mention = event_body("app_mention", channel="C0THREAD")
    root = mention["event"]["ts"]
    archbot.send(mention)
    replies(slack, "C0THREAD", root)
    for bot_message in (
        event_body("message_own_bot", channel="C0THREAD", thread_ts=root),
        event_body("message_other_bot", channel="C0THREAD", thread_ts=root),
    ):
        assert archbot.send(bot_message)[0] == 200
    archbot.send(event_body("message_thread_followup", channel="C0THREAD", thread_ts=root))
    posts = replies(slack, "C0THREAD", root, count=2)
    assert "point-in-time correctness" in posts[1].text
    barrier(archbot, "D0BARRIER3")
    assert len(slack.messages_in("C0THREAD")) == 2  # the bots' messages got no answer


def test_dm_is_answered(archbot: SlackRun, slack: FakeSlack) -> None:
    archbot.send(event_body("message_im", channel="D0NEWUSER"))
    [reply] = replies(slack, "D0NEWUSER", None)
    assert "version our training data" in reply.text
    assert reply.text.endswith(SIGN_OFF)


def test_channel_ping_from_the_model_arrives_neutralised(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    model.reply_text(
        "Announce it to <!channel> now, and <!here> too, and <!subteam^S0PLAT|@platform>."
    )
    body = event_body("app_mention", channel="C0PING")
    archbot.send(body)
    [reply] = replies(slack, "C0PING", body["event"]["ts"])
    text = reply.text
    assert "<!channel>" not in text and "<!here>" not in text and "<!subteam" not in text
    assert "@channel" not in text and "@here" not in text
    assert "Announce it to @\u200bchannel now" in text


def test_pings_in_a_streamed_answer_arrive_neutralised_even_across_chunks(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    # Long enough to be streamed; the model's 400-character deltas cut many tokens in two.
    model.reply_text(" ".join(f"Item {i}: ask <!channel> and <!here>." for i in range(200)))
    body = event_body("app_mention", channel="C0PINGS")
    archbot.send(body)
    messages = replies(slack, "C0PINGS", body["event"]["ts"])
    assert messages[0].streamed
    text = "".join(m.text for m in messages)
    assert "<!" not in text and "@channel" not in text and "@here" not in text
    assert text.count("@\u200bchannel") == 200 and text.count("@\u200bhere") == 200
    assert text.endswith(SIGN_OFF)


def test_a_30000_character_answer_with_a_400_line_code_block_arrives_whole(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    code = [
        f"    df_{i:03d} = load_partition('ticks', day={i})  # partition {i}" for i in range(400)
    ]
    prose = [
        f"Part {i}. Consider the storage layout, the backfill and the replay. " * 10
        for i in range(40)
    ]
    answer = (
        "\n\n".join(prose)
        + "\n\n```python\ndef backfill():\n"
        + "\n".join(code)
        + "\n```\n\nShip it behind a flag."
    )
    assert len(answer) >= 30_000
    model.reply_text(answer)
    body = event_body("app_mention", channel="C0LONG")
    ts = body["event"]["ts"]
    archbot.send(body)
    wait_until(
        lambda: any(SIGN_OFF in m.text for m in slack.thread_messages("C0LONG", ts)),
        what="the last part",
    )
    messages = slack.thread_messages("C0LONG", ts)
    assert all(m.thread_ts == ts for m in slack.messages_in("C0LONG"))
    assert len(slack.messages_in("C0LONG")) == len(messages)  # no stream left open
    # Streamed while the model writes, up to one message's worth; the rest posted after it.
    assert messages[0].streamed and not any(m.streamed for m in messages[1:])
    parts = [m.text for m in messages]
    assert len(parts) >= 3 and all(len(p) <= 12_000 for p in parts)
    for part in parts:
        fences = [line for line in part.split("\n") if line.strip().startswith("```")]
        assert len(fences) % 2 == 0, "a code fence left open"
    assert [SIGN_OFF in p for p in parts] == [False] * (len(parts) - 1) + [True]
    joined = "\n".join(parts)
    assert [line for line in joined.split("\n") if line.startswith("    df_")] == code
    for paragraph in prose:
        assert paragraph.strip() in joined
    assert "Ship it behind a flag." in joined


def test_a_429_on_posting_is_retried(archbot: SlackRun, slack: FakeSlack) -> None:
    slack.fail_next("chat.postMessage", 429, retry_after=1)
    body = event_body("app_mention", channel="C0LIMITED")
    archbot.send(body)
    [reply] = replies(slack, "C0LIMITED", body["event"]["ts"])
    tries = [c for c in slack.calls_of("chat.postMessage") if c.args.get("channel") == "C0LIMITED"]
    assert [c.status for c in tries] == [429, 200]
    assert reply.at - tries[0].at >= 1.0  # waited for Retry-After
    assert reply.text.endswith(SIGN_OFF)


def test_run_without_a_reachable_slack_or_a_signing_secret_says_why(tmp_path: Path) -> None:
    closed = free_port()
    env = {
        "ARCHBOT_SLACK__ENABLED": "true",
        "ARCHBOT_SLACK__MODE": "http",
        "ARCHBOT_SLACK__PORT": "0",
        "ARCHBOT_SLACK__API_URL": f"http://127.0.0.1:{closed}/api/",
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
        "SLACK_BOT_TOKEN": "xoxb-test-not-real",
    }
    missing = run_cli(["run"], cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert "SLACK_SIGNING_SECRET is not set" in missing.stderr
    unreachable = run_cli(
        ["run"], cwd=tmp_path, env={**env, "SLACK_SIGNING_SECRET": SIGNING_SECRET}
    )
    assert unreachable.returncode == 1
    assert "auth.test failed" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    assert "xoxb-test-not-real" not in unreachable.stderr + unreachable.stdout


def test_doctor_reaches_slack_with_auth_test(tmp_path: Path, slack: FakeSlack) -> None:

    before = len(slack.calls_of("auth.test"))
    env = {
        "ARCHBOT_SLACK__ENABLED": "true",
        "ARCHBOT_SLACK__API_URL": f"{slack.url}/api/",
        "ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db"),
        "SLACK_BOT_TOKEN": "xoxb-test-not-real",
        "SLACK_APP_TOKEN": "xapp-test-not-real",
    }
    done = run_cli(["doctor"], cwd=tmp_path, env=env)
    slack_line = next(line for line in done.stdout.splitlines() if " slack:" in line)
    assert slack_line.startswith("ok")
    assert "@archbot" in slack_line and "socket mode" in slack_line
    assert len(slack.calls_of("auth.test")) == before + 1
