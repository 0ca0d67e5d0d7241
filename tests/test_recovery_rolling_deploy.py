"""Issue 9 acceptance, tried as a new user would: `archbot run` (HTTP mode, loopback Slack,
scripted model) is killed with SIGKILL in the middle of a model call; then two `archbot run`
processes start on that database at once (a rolling deploy). The answer is posted once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.signoff import SIGN_OFF
from tests.conftest import wait_until
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import FakeSlack, event_body
from tests.slack_run import SECRETS, SlackRun, serving_model, serving_slack

FINISHED = "recovery at start finished"
STARTUP = 60.0  # seconds; starting archbot takes a while on a loaded machine


@pytest.fixture
def model() -> Iterator[FakeAnthropic]:
    with serving_model() as fake:
        yield fake


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with serving_slack() as fake:
        yield fake


def run(tmp: Path, name: str, db: Path, slack: FakeSlack, model: FakeAnthropic) -> SlackRun:
    """One `archbot run` on the shared database; the caller waits for it to listen."""
    return SlackRun(tmp, slack, model, db=db, name=name, wait=False)


def answers_in(slack: FakeSlack, channel: str, ts: str) -> int:
    """Every answer the bot began in a thread: posts plus streams started."""
    streams = [
        c
        for c in slack.calls_of("chat.startStream")
        if c.ok and c.args.get("channel") == channel and c.args.get("thread_ts") == ts
    ]
    return len(slack.posts(channel=channel, thread_ts=ts)) + len(streams)


def test_a_turn_killed_mid_model_call_is_answered_once_by_two_new_processes(
    tmp_path: Path, slack: FakeSlack, model: FakeAnthropic
) -> None:
    db = tmp_path / "archbot.db"
    first = run(tmp_path, "killed", db, slack, model)
    try:
        wait_until(
            first.listening, what="the first archbot to listen", within=STARTUP, proc=first.proc
        )
        question = "should we put features in Redis or Feast?"  # the recorded mention's words
        body = event_body("app_mention", channel="C0DEPLOY")
        ts = body["event"]["ts"]
        # Every model call takes a while: the first process is still waiting when it is
        # killed, and the process that recovers the turn is still waiting when the other is up.
        model.latency = 5.0
        assert first.send(body)[0] == 200
        wait_until(
            lambda: any(question in r.raw.decode() for r in model.message_requests),
            what="the model call of the first process",
            proc=first.proc,
        )
        first.kill()
    finally:
        if first.proc.poll() is None:
            first.kill()
    assert answers_in(slack, "C0DEPLOY", ts) == 0  # nothing was posted before the kill
    calls_before = len(model.message_requests)

    runs = [run(tmp_path, name, db, slack, model) for name in ("blue", "green")]
    try:
        for new in runs:
            wait_until(new.listening, what="a new archbot to listen", within=STARTUP, proc=new.proc)
        [reply] = wait_until(
            lambda: slack.thread_messages("C0DEPLOY", ts), what="the recovered answer", within=30
        )
        # Both have finished recovering (the one that lost waits until the answer is posted).
        wait_until(
            lambda: all(FINISHED in new.text() for new in runs), what="both recoveries", within=30
        )
        assert reply.text.endswith(SIGN_OFF)
        assert "Redis or Feast" in reply.text
        assert answers_in(slack, "C0DEPLOY", ts) == 1
        assert len(slack.thread_messages("C0DEPLOY", ts)) == 1
        assert len(model.message_requests) == calls_before + 1
        logs = [new.text() for new in runs]
        assert sum(f"{FINISHED}: 1 turn(s)" in log for log in logs) == 1
        assert sum("being recovered by another process" in log for log in logs) <= 1
    finally:
        codes = [new.stop() for new in runs]
    assert codes == [0, 0], "\n".join(new.log_path.read_text() for new in runs)
    for each in (first, *runs):
        log = each.log_path.read_text()
        assert not any(secret in log for secret in SECRETS)
