"""Issue 9 acceptance for Slack, tried as a new user would: `archbot run` (a real subprocess)
against the loopback Slack and a scripted model. Bursts are answered in order, Slackbot and empty
shares are ignored, shares are read, people are named, and every event is acknowledged."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.signoff import SIGN_OFF
from tests.conftest import clean_env, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, RecordedRequest, ServerThread
from tests.fakes.fake_slack import FakeSlack, event_body, load_payload
from tests.slack_run import SlackRun, serving_model, serving_slack
from tests.test_slack_acceptance import barrier, replies


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
    with SlackRun(tmp_path_factory.mktemp("archbot"), slack, model) as bot:
        yield bot


def user_texts(request: RecordedRequest) -> list[str]:
    """The text blocks of a model request's messages, in order (roles prefixed)."""
    out = []
    for m in request.body["messages"]:
        content = m["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        out.extend(f"{m['role']}: {b['text']}" for b in blocks if b.get("type") == "text")
    return out


def requests_mentioning(model: FakeAnthropic, needle: str) -> list[RecordedRequest]:
    return [r for r in model.message_requests if needle in json.dumps(r.body["messages"])]


def test_a_mention_and_two_follow_ups_within_200_ms_get_three_answers_in_order(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    mention = event_body(
        "app_mention", channel="C0BURST", text="<@U0BOT0001> burst one: Redis or Feast?"
    )
    root = mention["event"]["ts"]
    follow_ups = [
        event_body("message_thread_followup", channel="C0BURST", thread_ts=root, text=f"burst {n}?")
        for n in ("two", "three")
    ]
    model.latency = 1.5  # every message arrives while the first answer is being written
    # A Slack that answers slowly: the mention still waits on its indicator and names when
    # the follow-ups arrive (each of which waits on Slack too).
    slack.delays.update({"reactions.add": 0.3, "users.info": 0.3})
    try:
        statuses = [archbot.send(body)[0] for body in (mention, *follow_ups)]
        # The scenario holds only if all three came while the first answer was still being
        # written; a loaded machine may send them slower than Slack's 200 ms, which is fine.
        unanswered_when_all_arrived = not slack.thread_messages("C0BURST", root)
        posts = replies(slack, "C0BURST", root, count=3)
    finally:
        model.latency = 0.0
        slack.delays.clear()
    assert statuses == [200, 200, 200]
    assert unanswered_when_all_arrived, "the first answer was done before the follow-ups came"
    texts = [p.text for p in posts]
    assert [t.split("\n")[0] for t in texts] == [
        "Fake answer to: Alice: burst one: Redis or Feast?",
        "Fake answer to: Alice: burst two?",
        "Fake answer to: Alice: burst three?",
    ]
    assert all(t.endswith(SIGN_OFF) for t in texts)
    [_, _, third] = requests_mentioning(model, "burst one")
    assert user_texts(third)[-1] == "user: Alice: burst three?"
    seen = "\n".join(user_texts(third))
    assert "assistant: Fake answer to: Alice: burst one" in seen
    assert "assistant: Fake answer to: Alice: burst two?" in seen
    assert seen.index("burst one") < seen.index("burst two") < seen.index("burst three")
    barrier(archbot, "D0BARRIERB")
    assert len(slack.messages_in("C0BURST")) == 3  # one answer per message, none merged


def test_forget_during_a_tool_round_leaves_that_rounds_request_with_its_question(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    question = "forget-test: which feature store for 5 ms reads?"
    mention = event_body("app_mention", channel="C0FORGET", text=f"<@U0BOT0001> {question}")
    root = mention["event"]["ts"]
    model.reply_tool_use("list_todos", {})
    model.reply_text("Redis online, Parquet offline.")
    model.latency = 0.8  # `!forget` arrives while the first model call is still out
    try:
        assert archbot.send(mention)[0] == 200
        wait_until(lambda: requests_mentioning(model, "forget-test"), what="the first model call")
        forget = event_body(
            "message_thread_followup", channel="C0FORGET", thread_ts=root, text="!forget"
        )
        assert archbot.send(forget)[0] == 200
        answer, forgotten = replies(slack, "C0FORGET", root, count=2)
    finally:
        model.latency = 0.0
    _first, tool_round = requests_mentioning(model, "forget-test")
    assert tool_round.body["messages"][-1]["content"][0]["type"] == "tool_result"
    assert question in json.dumps(tool_round.body["messages"])
    assert answer.text.startswith("Redis online, Parquet offline.")
    assert forgotten.text.startswith("Forgotten:")  # after the turn, not in the middle of it


def test_follow_ups_wait_for_a_mention_that_is_still_reading_its_thread(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    history = load_payload("conversations_replies")["messages"]
    thread_ts = history[0]["ts"]
    slack.threads[("C0CALLED", thread_ts)] = history
    mention = event_body(
        "app_mention_in_thread",
        channel="C0CALLED",
        thread_ts=thread_ts,
        text="<@U0BOT0001> called in: first?",
    )
    follow_ups = [
        event_body(
            "message_thread_followup",
            channel="C0CALLED",
            thread_ts=thread_ts,
            text=f"called in: {n}?",
        )
        for n in ("second", "third")
    ]
    slack.delays["conversations.replies"] = 0.5  # the mention reads the thread; they need not
    try:
        assert [archbot.send(body)[0] for body in (mention, *follow_ups)] == [200, 200, 200]
        posts = replies(slack, "C0CALLED", thread_ts, count=3)
    finally:
        slack.delays.clear()
    assert len(posts) == 3 and all(p.text.endswith(SIGN_OFF) for p in posts)
    asked = [user_texts(r)[-1] for r in requests_mentioning(model, "called in: ")]
    assert [text.rsplit(": ", 1)[-1] for text in asked] == ["first?", "second?", "third?"]
    seen = "\n".join(user_texts(requests_mentioning(model, "called in: ")[-1]))
    assert seen.index("Proposal: move the tick store") < seen.index("called in: first?")
    assert seen.index("called in: first?") < seen.index("called in: second?")


def test_a_slackbot_notice_in_the_dm_gets_no_model_call_and_no_post(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    assert archbot.send(event_body("message_slackbot_im", channel="D0BOTDM01"))[0] == 200
    barrier(archbot, "D0BARRIERS")
    assert slack.messages_in("D0BOTDM01") == []
    assert not [c for c in slack.calls if c.args.get("channel") == "D0BOTDM01"]
    assert requests_mentioning(model, "You have been removed") == []


def test_a_shared_message_with_empty_text_is_answered_about_the_shared_text(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    body = event_body("message_share_without_text", channel="D0SHARE01", channel_type="im")
    assert archbot.send(body)[0] == 200
    [reply] = replies(slack, "D0SHARE01", None)
    assert "The nightly backfill of the tick store" in reply.text
    [request] = requests_mentioning(model, "The nightly backfill of the tick store")
    last = user_texts(request)[-1]
    assert last.startswith("user: Alice: [Forwarded message from Bob (#infra)]")
    assert "> The nightly backfill of the tick store takes 9 hours; can Kafka replay it?" in last


def test_an_empty_share_gets_no_model_call_and_no_post(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    before = len(model.message_requests)
    assert archbot.send(event_body("message_share_empty", channel="D0EMPTY01"))[0] == 200
    barrier(archbot, "D0BARRIERE")
    assert not [c for c in slack.calls if c.args.get("channel") == "D0EMPTY01"]
    assert len(model.message_requests) == before + 1  # the barrier's


def test_the_model_sees_alice_not_her_id_also_in_the_thread_it_was_called_into(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    history = load_payload("conversations_replies")["messages"]
    thread_ts = history[0]["ts"]
    slack.threads[("C0NAMES", thread_ts)] = history
    body = event_body(
        "app_mention_in_thread",
        channel="C0NAMES",
        thread_ts=thread_ts,
        user="U0ALICE01",
        text="<@U0BOT0001> names check: what does <@U0BOB0002> think?",
    )
    assert archbot.send(body)[0] == 200
    replies(slack, "C0NAMES", thread_ts)
    [request] = requests_mentioning(model, "names check")
    seen = "\n".join(user_texts(request))
    assert "Alice: names check: what does @Bob think?" in seen
    assert "Alice: Proposal: move the tick store" in seen  # the context, named
    assert "Bob: Worried about the backfill" in seen
    assert "U0ALICE01" not in json.dumps(request.body)
    assert "U0BOB0002" not in json.dumps(request.body)


def test_an_event_type_the_bot_does_not_act_on_is_acknowledged_over_http(
    archbot: SlackRun, slack: FakeSlack
) -> None:
    status, elapsed = archbot.send(event_body("assistant_thread_started"))
    assert (status, elapsed < 1.0) == (200, True)
    barrier(archbot, "D0BARRIERA")
    assert slack.messages_in("D0ALICEDM") == []


# Socket Mode --------------------------------------------------------------------------------


class SocketArchbot:
    """`archbot run` in Socket Mode against the fake's Socket Mode endpoint."""

    def __init__(self, tmp: Path, slack: FakeSlack, model: FakeAnthropic) -> None:
        self.log_path = tmp / "archbot.log"
        self.log = self.log_path.open("w")
        env = clean_env(
            ARCHBOT_SLACK__ENABLED="true",
            ARCHBOT_SLACK__MODE="socket",
            ARCHBOT_SLACK__API_URL=f"{slack.url}/api/",
            SLACK_BOT_TOKEN="xoxb-test-not-real",
            SLACK_APP_TOKEN="xapp-test-not-real",
            ANTHROPIC_BASE_URL=model.url,  # type: ignore[attr-defined]
            ANTHROPIC_API_KEY="sk-test-not-real",
            ARCHBOT_STORAGE__PATH=str(tmp / "a.db"),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.log.close()


def acked(slack: FakeSlack, envelope_id: str) -> list[dict[str, Any]]:
    return [a for a in slack.socket_acks if a.get("envelope_id") == envelope_id]


def test_an_assistant_thread_started_envelope_over_socket_mode_is_acknowledged(
    tmp_path: Path, model: FakeAnthropic
) -> None:
    slack = FakeSlack()
    server = ServerThread(slack.app()).start()
    slack.url = server.url
    bot = SocketArchbot(tmp_path, slack, model)
    try:
        wait_until(lambda: slack.socket_connected, what="a Socket Mode connection", proc=bot.proc)
        slack.send_socket_event(event_body("assistant_thread_started"), "env-assistant")
        slack.send_socket_event(event_body("message_changed"), "env-edit")
        mention = event_body("app_mention", channel="C0SOCKET")
        slack.send_socket_event(mention, "env-mention")
        wait_until(
            lambda: acked(slack, "env-assistant") and acked(slack, "env-edit"),
            what="the envelopes acknowledged",
            proc=bot.proc,
        )
        replies(slack, "C0SOCKET", mention["event"]["ts"])
        assert len(acked(slack, "env-assistant")) == 1
        assert acked(slack, "env-mention")
    finally:
        code = bot.stop()
        server.stop()
    log = bot.log_path.read_text()
    assert code == 0, log
    assert "Traceback" not in log, log
