"""Issue 9 acceptance, tried as a new user would: `archbot run` (HTTP mode, loopback Slack,
scripted model) is killed with SIGKILL in the middle of a model call; then two `archbot run`
processes start on that database at once (a rolling deploy). The answer is posted once."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.signoff import SIGN_OFF
from tests.conftest import clean_env, free_port, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_slack import FakeSlack, event_body, event_request

SIGNING_SECRET = "rolling-deploy-signing-secret-not-real"
BOT_TOKEN = "xoxb-test-not-real"
FINISHED = "recovery at start finished"
STARTUP = 60.0  # seconds; starting archbot takes a while on a loaded machine


class Run:
    """One `archbot run` process on a shared database, with its own port and log file."""

    def __init__(self, tmp: Path, name: str, db: Path, slack: FakeSlack, model: FakeAnthropic):
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        env = clean_env(
            ARCHBOT_SLACK__ENABLED="true",
            ARCHBOT_SLACK__MODE="http",
            ARCHBOT_SLACK__PORT=str(self.port),
            ARCHBOT_SLACK__API_URL=f"{slack.url}/api/",
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            ANTHROPIC_BASE_URL=model.url,  # type: ignore[attr-defined]
            ANTHROPIC_API_KEY="sk-test-not-real",
            ARCHBOT_STORAGE__PATH=str(db),
        )
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"archbot run exited {self.proc.returncode}:\n{self.text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def send(self, body: dict[str, Any]) -> int:
        raw, headers = event_request(body, SIGNING_SECRET)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/slack/events", data=raw, headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)

    def text(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.log.close()


@pytest.fixture
def model() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    server = ServerThread(fake.app()).start()
    fake.url = server.url  # type: ignore[attr-defined]
    try:
        yield fake
    finally:
        fake.latency = 0.0
        server.stop()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    server = ServerThread(fake.app()).start()
    fake.url = server.url
    try:
        yield fake
    finally:
        server.stop()


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
    first = Run(tmp_path, "killed", db, slack, model)
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
        assert first.send(body) == 200
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

    runs = [Run(tmp_path, name, db, slack, model) for name in ("blue", "green")]
    try:
        for run in runs:
            wait_until(run.listening, what="a new archbot to listen", within=STARTUP, proc=run.proc)
        [reply] = wait_until(
            lambda: slack.thread_messages("C0DEPLOY", ts), what="the recovered answer", within=30
        )
        # Both have finished recovering (the one that lost waits until the answer is posted).
        wait_until(
            lambda: all(FINISHED in run.text() for run in runs), what="both recoveries", within=30
        )
        assert reply.text.endswith(SIGN_OFF)
        assert "Redis or Feast" in reply.text
        assert answers_in(slack, "C0DEPLOY", ts) == 1
        assert len(slack.thread_messages("C0DEPLOY", ts)) == 1
        assert len(model.message_requests) == calls_before + 1
        logs = [run.text() for run in runs]
        assert sum(f"{FINISHED}: 1 turn(s)" in log for log in logs) == 1
        assert sum("being recovered by another process" in log for log in logs) <= 1
    finally:
        codes = [run.stop() for run in runs]
    assert codes == [0, 0], "\n".join(run.log_path.read_text() for run in runs)
    for run in (first, *runs):
        log = run.log_path.read_text()
        assert BOT_TOKEN not in log and SIGNING_SECRET not in log
