"""Issue 11 acceptance for Slack in HTTP mode, tried as a new user would: `archbot run` (a real
subprocess) against the loopback Slack (an app declared an agent), a scripted model and a
loopback GitHub. Sessions show `processing` then `active`, tool calls stream as task cards, model
answers carry 👍 / 👎 that `!quality` counts, the assistant pane offers starter prompts, and a
workspace that refuses sessions gets the old indicator."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.assistant import SUGGESTED_PROMPTS
from bot.signoff import SIGN_OFF
from tests.conftest import wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_github import FakeGitHub, trading_repo
from tests.fakes.fake_slack import (
    DEFAULT_SCOPES,
    FakeSlack,
    SlackMessage,
    event_body,
    feedback_click,
    interaction_request,
)
from tests.slack_run import SIGNING_SECRET, SlackRun, serving, serving_model
from tests.test_slack_acceptance import barrier, replies


@pytest.fixture(scope="module")
def model() -> Iterator[FakeAnthropic]:
    with serving_model() as fake:
        yield fake


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with serving(FakeSlack(agent=True)) as fake:
        yield fake


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    fake = trading_repo(FakeGitHub())
    server = ServerThread(fake.app()).start()
    fake.url = server.url  # type: ignore[attr-defined]
    try:
        yield fake
    finally:
        server.stop()


@pytest.fixture(scope="module")
def archbot(
    tmp_path_factory: pytest.TempPathFactory,
    slack: FakeSlack,
    model: FakeAnthropic,
    github: FakeGitHub,
) -> Iterator[SlackRun]:
    with SlackRun(
        tmp_path_factory.mktemp("archbot"),
        slack,
        model,
        GITHUB_TOKEN="ghp-test-not-real",
        ARCHBOT_GITHUB__API_URL=github.url,  # type: ignore[attr-defined]
        ARCHBOT_GITHUB__DEFAULT_REPO="acme/trading",
    ) as bot:
        yield bot


def click(bot: SlackRun, payload: dict[str, Any]) -> int:
    """POST a signed `block_actions` payload to /slack/events; the HTTP status."""
    raw, headers = interaction_request(payload, SIGNING_SECRET)
    request = urllib.request.Request(
        f"http://127.0.0.1:{bot.port}/slack/events", data=raw, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


def buttons(message: SlackMessage) -> list[dict[str, Any]]:
    """The feedback buttons under a message (none: [])."""
    return [
        element
        for block in message.blocks
        if block.get("type") == "context_actions"
        for element in block.get("elements", [])
        if element.get("type") == "feedback_buttons"
    ]


def mention(channel: str, text: str) -> dict[str, Any]:
    return event_body("app_mention", channel=channel, text=f"<@U0BOT0001> {text}")


def test_a_mention_shows_processing_while_the_model_works_and_active_after(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    body = mention("C0SESSION", "session check: Kafka or Redpanda for tick data?")
    ts = body["event"]["ts"]
    model.latency = 1.0
    try:
        assert archbot.send(body)[0] == 200
        wait_until(
            lambda: slack.session_statuses("C0SESSION", ts) == ["processing"],
            what="the session processing",
        )
        assert slack.thread_messages("C0SESSION", ts) == []  # still working
        [reply] = replies(slack, "C0SESSION", ts)
    finally:
        model.latency = 0.0
    wait_until(
        lambda: slack.session_statuses("C0SESSION", ts) == ["processing", "active"],
        what="the session active",
    )
    assert slack.session_titles[("C0SESSION", ts)] == (
        "session check: Kafka or Redpanda for tick data?"
    )
    assert reply.text.endswith(SIGN_OFF)
    # The session is the indicator: no reaction, no assistant status besides it.
    assert not [c for c in slack.calls_of("reactions.add") if c.args.get("channel") == "C0SESSION"]


def test_a_turn_reading_a_file_streams_its_task_card_ending_complete_and_the_buttons(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    model.reply_tool_use("read_file", {"path": "src/trading/features/store.py"})
    model.reply_text("The feature store keeps online features in Redis.")
    body = mention("C0CARDS", "card check: where is our feature store?")
    ts = body["event"]["ts"]
    assert archbot.send(body)[0] == 200
    [answer] = replies(slack, "C0CARDS", ts)
    assert answer.streamed  # the first tool call started the stream, though the answer is short
    assert answer.text.startswith("The feature store keeps online features in Redis.")
    assert answer.text.endswith(SIGN_OFF)
    cards = slack.task_updates("C0CARDS", ts)
    assert cards, "no task_update chunk was streamed"
    assert {c["id"] for c in cards} == {cards[0]["id"]}  # one tool call, one card
    assert cards[0]["status"] == "in_progress"
    assert cards[-1]["status"] == "complete"
    assert cards[-1]["title"] == "Reading `src/trading/features/store.py` in acme/trading"
    assert cards[-1]["sources"] == [
        {
            "type": "url",
            "url": "https://github.com/acme/trading/blob/HEAD/src/trading/features/store.py",
            "text": "src/trading/features/store.py",
        }
    ]
    assert answer.tasks[cards[0]["id"]]["status"] == "complete"  # what the reader sees at the end
    # The answer's last message carries the feedback buttons, passed on chat.stopStream.
    [feedback] = buttons(answer)
    assert feedback["positive_button"]["value"].startswith("up:")
    [stop] = [c for c in slack.calls_of("chat.stopStream") if c.args.get("ts") == answer.ts]
    assert stop.args.get("blocks")
    # Batched: start, the card's end with the text, stop; never one call per delta.
    stream_calls = [
        c
        for c in slack.calls
        if c.method in ("chat.startStream", "chat.appendStream", "chat.stopStream")
        and (c.args.get("thread_ts") == ts or c.args.get("ts") == answer.ts)
    ]
    assert len(stream_calls) <= 4


def test_stop_during_a_slow_tool_call_closes_the_stream_with_the_card_ended_in_error(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic, github: FakeGitHub
) -> None:
    # Only the tool call is queued: the stopped turn makes no second model call.
    model.reply_tool_use("read_file", {"path": "src/trading/serving/online.py"})
    body = mention("C0TOOLSTOP", "tool stop check: read the online server")
    ts = body["event"]["ts"]
    github.latency = 5.0
    try:
        assert archbot.send(body)[0] == 200
        wait_until(lambda: slack.task_updates("C0TOOLSTOP", ts), what="the card in progress")
        started = time.monotonic()
        stop = event_body(
            "message_thread_followup", channel="C0TOOLSTOP", thread_ts=ts, text="!stop"
        )
        assert archbot.send(stop)[0] == 200
        streamed, stopped = replies(slack, "C0TOOLSTOP", ts, count=2)
        assert time.monotonic() - started < 2.0
    finally:
        github.latency = 0.0
    assert stopped.text.startswith("Stopped.") and stopped.blocks == []
    assert streamed.streamed and not streamed.streaming  # closed by the bot, on what it showed
    cards = slack.task_updates("C0TOOLSTOP", ts)
    assert [c["status"] for c in cards] == ["in_progress", "error"]
    assert "src/trading/serving/online.py" in cards[-1]["title"]
    assert streamed.blocks == []


def test_answers_carry_feedback_buttons_commands_do_not_and_a_click_is_counted(
    archbot: SlackRun, slack: FakeSlack
) -> None:
    body = mention("C0FEEDBACK", "feedback check: is Parquet fine for 5 years of ticks?")
    ts = body["event"]["ts"]
    assert archbot.send(body)[0] == 200
    [answer] = replies(slack, "C0FEEDBACK", ts)
    assert answer.text.startswith("Fake answer to: Alice: feedback check")
    [feedback] = buttons(answer)
    up = feedback["positive_button"]["value"]
    todos = event_body("message_thread_followup", channel="C0FEEDBACK", thread_ts=ts, text="!todos")
    assert archbot.send(todos)[0] == 200
    _, listed = replies(slack, "C0FEEDBACK", ts, count=2)
    assert buttons(listed) == []  # a command's reply takes no feedback

    assert click(archbot, feedback_click(up, channel="C0FEEDBACK", message_ts=answer.ts)) == 200
    quality = event_body(
        "message_thread_followup", channel="C0FEEDBACK", thread_ts=ts, text="!quality"
    )
    assert archbot.send(quality)[0] == 200
    *_, report = replies(slack, "C0FEEDBACK", ts, count=3)
    [row] = [line for line in report.text.splitlines() if "C0FEEDBACK" in line]
    assert "👍 1" in row and "👎 0" in row
    assert buttons(report) == []

    # The latest click counts: 👎 replaces the 👍.
    down = feedback["negative_button"]["value"]
    assert click(archbot, feedback_click(down, channel="C0FEEDBACK", message_ts=answer.ts)) == 200
    again = event_body(
        "message_thread_followup", channel="C0FEEDBACK", thread_ts=ts, text="!quality"
    )
    assert archbot.send(again)[0] == 200
    *_, report = replies(slack, "C0FEEDBACK", ts, count=4)
    [row] = [line for line in report.text.splitlines() if "C0FEEDBACK" in line]
    assert "👍 0" in row and "👎 1" in row


def test_a_bad_or_forged_click_is_acknowledged_and_ignored(
    archbot: SlackRun, slack: FakeSlack
) -> None:
    body = mention("C0BADCLICK", "bad click check: Flink or Spark?")
    ts = body["event"]["ts"]
    assert archbot.send(body)[0] == 200
    [answer] = replies(slack, "C0BADCLICK", ts)
    [feedback] = buttons(answer)
    value = feedback["positive_button"]["value"]
    for payload in (
        feedback_click("up:999999", channel="C0BADCLICK", message_ts=answer.ts),  # no such answer
        feedback_click("up:1; DROP TABLE", channel="C0BADCLICK", message_ts=answer.ts),
        feedback_click(value, channel="C0ELSEWHERE", message_ts=answer.ts),  # another channel
        feedback_click(value, channel="C0BADCLICK", message_ts=answer.ts, user="bob"),
    ):
        assert click(archbot, payload) == 200
    # A shape Slack never sends is refused outright, not crashed on.
    malformed = {"type": "block_actions", "team": {"id": "T0TEAM001"}, "actions": "nope"}
    assert click(archbot, malformed) == 400
    quality = event_body(
        "message_thread_followup", channel="C0BADCLICK", thread_ts=ts, text="!quality"
    )
    assert archbot.send(quality)[0] == 200
    _, report = replies(slack, "C0BADCLICK", ts, count=2)
    assert not [line for line in report.text.splitlines() if "C0BADCLICK" in line]
    assert "Traceback" not in archbot.text()


def test_opening_the_assistant_pane_offers_prompts_and_the_first_question_names_it(
    archbot: SlackRun, slack: FakeSlack
) -> None:
    opened = event_body("assistant_thread_started")
    thread = opened["event"]["assistant_thread"]
    thread["channel_id"], thread["thread_ts"] = "D0PANE001", "1764151700.000100"
    status, elapsed = archbot.send(opened)
    assert (status, elapsed < 1.0) == (200, True)
    offered = wait_until(
        lambda: slack.suggested_prompts.get(("D0PANE001", "1764151700.000100")),
        what="the suggested prompts",
    )
    assert offered["prompts"] == [dict(p) for p in SUGGESTED_PROMPTS]
    assert len(offered["prompts"]) <= 4
    changed = event_body("assistant_thread_started")
    changed["event"]["type"] = "assistant_thread_context_changed"
    assert archbot.send(changed)[0] == 200

    for n, text in enumerate(("How should we version our features?", "And the models?")):
        asked = event_body(
            "message_im_thread",
            channel="D0PANE001",
            thread_ts="1764151700.000100",
            text=text,
        )
        assert archbot.send(asked)[0] == 200
        replies(slack, "D0PANE001", "1764151700.000100", count=n + 1)
    assert slack.titles[("D0PANE001", "1764151700.000100")] == (
        "How should we version our features?"
    )
    assert len(slack.calls_of("assistant.threads.setTitle")) == 1  # the first question only


def test_opening_the_agent_apps_dm_offers_the_prompts_once(
    archbot: SlackRun, slack: FakeSlack
) -> None:
    opened = event_body("assistant_thread_started")
    opened["event"] = {
        "type": "app_home_opened",
        "user": "U0ALICE01",
        "channel": "D0AGENTDM",
        "tab": "messages",
        "event_ts": opened["event"]["event_ts"],
    }
    for _ in range(2):
        assert archbot.send(opened)[0] == 200
    home = {**opened, "event": {**opened["event"], "channel": "D0HOMETAB", "tab": "home"}}
    assert archbot.send(home)[0] == 200
    offered = wait_until(
        lambda: slack.suggested_prompts.get(("D0AGENTDM", "")), what="the DM's prompts"
    )
    assert offered["prompts"] == [dict(p) for p in SUGGESTED_PROMPTS]
    barrier(archbot, "D0BARRIERH")
    calls = [
        c
        for c in slack.calls_of("assistant.threads.setSuggestedPrompts")
        if c.args.get("channel_id") == "D0AGENTDM"
    ]
    assert len(calls) == 1  # once per run
    assert "thread_ts" not in calls[0].args  # an agent app's DM prompts take no thread
    assert ("D0HOMETAB", "") not in slack.suggested_prompts


def test_where_sessions_and_streaming_are_refused_the_old_indicator_shows_and_answers_arrive(
    tmp_path: Path, model: FakeAnthropic, github: FakeGitHub
) -> None:
    refusing = FakeSlack(
        agent=True, scopes=set(DEFAULT_SCOPES) - {"assistant:write"}, stream_error="unknown_method"
    )
    with serving(refusing) as slack:
        bot = SlackRun(
            tmp_path,
            slack,
            model,
            GITHUB_TOKEN="ghp-test-not-real",
            ARCHBOT_GITHUB__API_URL=github.url,  # type: ignore[attr-defined]
            ARCHBOT_GITHUB__DEFAULT_REPO="acme/trading",
        )
        try:
            # A tool call where no stream can show its card: the turn goes on, the card is not shown.
            model.reply_tool_use("read_file", {"path": "README.md"})
            model.reply_text("Fake answer to: Alice: refusal check: one? It is in the README.")
            first = mention("C0NOAGENT", "refusal check: one?")
            assert bot.send(first)[0] == 200
            [answer] = replies(slack, "C0NOAGENT", first["event"]["ts"])
            second = mention("C0NOAGENT", "refusal check: two?")
            assert bot.send(second)[0] == 200
            replies(slack, "C0NOAGENT", second["event"]["ts"])
            barrier(bot, "D0BARRIERN")
        finally:
            bot.stop_cleanly()
    assert answer.text.startswith("Fake answer to: Alice: refusal check: one?")
    assert not answer.streamed and buttons(answer)  # posted, with its 👍 / 👎
    assert slack.task_updates("C0NOAGENT", first["event"]["ts"]) == []
    [refused] = slack.calls_of("agents.sessions.setStatus")  # asked once, not every turn
    assert not refused.ok
    added = [c for c in slack.calls_of("reactions.add") if c.args.get("channel") == "C0NOAGENT"]
    assert len(added) == 2  # the old indicator, on both turns
    assert slack.sessions == {}
