"""Issue 11 acceptance, stop means stop on Slack, tried as a new user would: `archbot run` (a real
subprocess) in HTTP mode and in Socket Mode against the loopback Slack (an app declared an agent)
and a slow scripted model. Slack's stop button (`agent_session_stopped`) or `!stop` in the thread
gets "Stopped." within a second or two, the slow answer never appears, a stream is closed on what
it showed, and the next message is answered.

Nothing here queues scripted answers: a stopped model request still runs out its latency in the
fake, and would take a queued answer meant for a later test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.signoff import SIGN_OFF
from tests.conftest import wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_slack import FakeSlack, SlackMessage, event_body, feedback_click
from tests.slack_run import SlackRun, serving, serving_model
from tests.test_slack_acceptance import replies
from tests.test_slack_conversation_acceptance import SocketArchbot, acked

SLOW = 6.0  # seconds the model takes: far longer than a stop may
LONG_ANSWER = " ".join(f"Step {n}: partition the tick store by venue and day." for n in range(60))


@pytest.fixture(scope="module")
def model() -> Iterator[FakeAnthropic]:
    with serving_model() as fake:
        yield fake


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    with serving(FakeSlack(agent=True)) as fake:
        yield fake


@pytest.fixture(scope="module")
def archbot(
    tmp_path_factory: pytest.TempPathFactory, slack: FakeSlack, model: FakeAnthropic
) -> Iterator[SlackRun]:
    with SlackRun(tmp_path_factory.mktemp("archbot"), slack, model) as bot:
        yield bot


def asked(model: FakeAnthropic, needle: str) -> bool:
    return any(needle in str(r.body["messages"]) for r in model.message_requests)


def follow_up(channel: str, ts: str, text: str) -> dict[str, Any]:
    return event_body("message_thread_followup", channel=channel, thread_ts=ts, text=text)


def assert_stopped(message: SlackMessage) -> None:
    assert message.text.startswith("Stopped.") and message.text.endswith(SIGN_OFF)
    assert message.blocks == []  # no 👍 / 👎 on "Stopped."


def test_the_stop_button_stops_a_six_second_answer_within_two_seconds_and_the_thread_goes_on(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    body = event_body(
        "app_mention", channel="C0STOP", text="<@U0BOT0001> stop check: design the tick store"
    )
    ts = body["event"]["ts"]
    model.latency = SLOW
    try:
        assert archbot.send(body)[0] == 200
        wait_until(lambda: asked(model, "stop check: design"), what="the slow model call")
        sent_at = time.monotonic()
        wait_until(
            lambda: slack.session_statuses("C0STOP", ts) == ["processing"], what="processing"
        )
        started = time.monotonic()
        status, ack = archbot.send(slack.stop_session("C0STOP", ts))
        assert (status, ack < 1.0) == (200, True)
        [stopped] = replies(slack, "C0STOP", ts)
        assert time.monotonic() - started < 2.0
    finally:
        model.latency = 0.0
    assert_stopped(stopped)
    wait_until(
        lambda: slack.session_statuses("C0STOP", ts) == ["processing", "active"],
        what="the session out of processing",
    )
    assert archbot.send(follow_up("C0STOP", ts, "stop check: and the short version?"))[0] == 200
    _, answer = replies(slack, "C0STOP", ts, count=2)
    assert answer.text.startswith("Fake answer to: Alice: stop check: and the short version?")
    # The slow answer's time comes and goes: it never appears.
    wait_until(lambda: time.monotonic() - sent_at > SLOW + 0.5, what="the slow answer's time")
    assert not any("stop check: design" in t for t in slack.sent_texts())
    assert len(slack.messages_in("C0STOP")) == 2


def test_stop_typed_in_the_thread_stops_the_turn_and_gets_no_reply_of_its_own(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    body = event_body(
        "app_mention", channel="C0BANG", text="<@U0BOT0001> bang check: plan the backfill"
    )
    ts = body["event"]["ts"]
    model.latency = SLOW
    try:
        assert archbot.send(body)[0] == 200
        wait_until(lambda: asked(model, "bang check: plan"), what="the slow model call")
        started = time.monotonic()
        assert archbot.send(follow_up("C0BANG", ts, "!stop"))[0] == 200
        [stopped] = replies(slack, "C0BANG", ts)
        assert time.monotonic() - started < 2.0
    finally:
        model.latency = 0.0
    assert_stopped(stopped)
    assert archbot.send(follow_up("C0BANG", ts, "bang check: next?"))[0] == 200
    _, answer = replies(slack, "C0BANG", ts, count=2)
    assert answer.text.startswith("Fake answer to: Alice: bang check: next?")
    assert len(slack.messages_in("C0BANG")) == 2  # "Stopped." and the answer: none for `!stop`
    assert not any("bang check: plan" in t for t in slack.sent_texts())
    # Once more, with nothing running: `!stop` says so.
    assert archbot.send(follow_up("C0BANG", ts, "!stop"))[0] == 200
    *_, nothing = replies(slack, "C0BANG", ts, count=3)
    assert nothing.text.startswith("Nothing is being written in this thread right now.")


def test_a_stop_mid_stream_leaves_what_was_shown_and_sends_nothing_more(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    body = event_body(
        "app_mention", channel="C0MIDSTREAM", text="<@U0BOT0001> midstream check: the full plan"
    )
    ts = body["event"]["ts"]
    model.default_text, model.stream_delay = LONG_ANSWER, 0.1
    try:
        assert archbot.send(body)[0] == 200
        streaming = wait_until(
            lambda: [m for m in slack.messages_in("C0MIDSTREAM") if m.streaming and m.text],
            what="the answer streaming",
        )
        started = time.monotonic()
        assert archbot.send(slack.stop_session("C0MIDSTREAM", ts))[0] == 200
        _, stopped = replies(slack, "C0MIDSTREAM", ts, count=2)
        assert time.monotonic() - started < 2.0
    finally:
        model.default_text, model.stream_delay = None, 0.0
    assert_stopped(stopped)
    [partial] = streaming
    shown = slack.message("C0MIDSTREAM", partial.ts)
    assert shown is not None and not shown.streaming
    assert LONG_ANSWER.startswith(shown.text.strip()[:200])
    assert len(shown.text) < len(LONG_ANSWER)
    assert shown.blocks == []  # a stopped answer takes no feedback
    # Slack ended that stream: nothing more was sent to it after the stop.
    late = [
        c
        for c in slack.calls
        if c.method in ("chat.appendStream", "chat.stopStream")
        and c.args.get("ts") == partial.ts
        and c.at > started
    ]
    assert late == []
    assert not any("Step 59" in t for t in slack.sent_texts())


# Socket Mode ---------------------------------------------------------------------------------


def test_over_socket_mode_the_stop_button_stops_and_a_click_is_counted(
    tmp_path: Path, model: FakeAnthropic
) -> None:
    slack = FakeSlack(agent=True)
    server = ServerThread(slack.app()).start()
    slack.url = server.url
    bot = SocketArchbot(tmp_path, slack, model)
    try:
        wait_until(lambda: slack.socket_connected, what="a Socket Mode connection", proc=bot.proc)
        body = event_body(
            "app_mention", channel="C0SOCKSTOP", text="<@U0BOT0001> socket check: slow one"
        )
        ts = body["event"]["ts"]
        model.latency = SLOW
        try:
            slack.send_socket_event(body, "env-slow")
            wait_until(lambda: asked(model, "socket check: slow"), what="the slow model call")
            wait_until(
                lambda: slack.session_statuses("C0SOCKSTOP", ts) == ["processing"],
                what="processing",
            )
            started = time.monotonic()
            slack.send_socket_event(slack.stop_session("C0SOCKSTOP", ts), "env-stop")
            [stopped] = replies(slack, "C0SOCKSTOP", ts)
            assert time.monotonic() - started < 2.0
        finally:
            model.latency = 0.0
        assert_stopped(stopped)
        wait_until(lambda: acked(slack, "env-stop"), what="the stop acknowledged", proc=bot.proc)
        wait_until(
            lambda: slack.session_statuses("C0SOCKSTOP", ts) == ["processing", "active"],
            what="active after the stop",
        )
        slack.send_socket_event(follow_up("C0SOCKSTOP", ts, "socket check: next?"), "env-next")
        _, answer = replies(slack, "C0SOCKSTOP", ts, count=2)
        assert answer.text.startswith("Fake answer to: Alice: socket check: next?")
        [block] = [b for b in answer.blocks if b["type"] == "context_actions"]
        up = block["elements"][0]["positive_button"]["value"]
        slack.send_socket_interactive(
            feedback_click(up, channel="C0SOCKSTOP", message_ts=answer.ts), "env-click"
        )
        wait_until(lambda: acked(slack, "env-click"), what="the click acknowledged", proc=bot.proc)
        slack.send_socket_event(follow_up("C0SOCKSTOP", ts, "!quality"), "env-quality")
        *_, report = replies(slack, "C0SOCKSTOP", ts, count=3)
        [row] = [line for line in report.text.splitlines() if "C0SOCKSTOP" in line]
        assert "👍 1" in row
        assert not any("socket check: slow" in t for t in slack.sent_texts())
    finally:
        code = bot.stop()
        server.stop()
    log = bot.log_path.read_text()
    assert code == 0, log
    assert "Traceback" not in log, log
