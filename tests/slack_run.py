"""`archbot run` as a real subprocess in Slack HTTP mode, for the acceptance tests.

One runner for every test that drives the bot as a user would: it starts the
process against a loopback Slack Web API and a scripted model, waits until it
listens on /slack/events, sends signed Events API requests, and stops (or
kills) it. `serving(fake)` runs a fake's aiohttp app on a loopback port.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import clean_env, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_slack import FakeSlack, event_request

SIGNING_SECRET = "acceptance-signing-secret-not-real"
BOT_TOKEN = "xoxb-test-not-real"
MODEL_KEY = "sk-test-not-real"
SECRETS = (SIGNING_SECRET, BOT_TOKEN, MODEL_KEY)
# Seconds for a new process to listen: the imports alone take seconds of CPU, and with
# parallel test workers on two cores a start-up can wait its turn for a while.
STARTUP = 60.0


F = TypeVar("F", FakeAnthropic, FakeSlack)


@contextmanager
def serving(fake: F) -> Iterator[F]:
    """Serve a fake's app on 127.0.0.1 for the block; `fake.url` is its base URL."""
    server = ServerThread(fake.app()).start()
    fake.url = server.url  # type: ignore[union-attr]
    try:
        yield fake
    finally:
        server.stop()


@contextmanager
def serving_model() -> Iterator[FakeAnthropic]:
    """A scripted Messages API on loopback (latency reset afterwards)."""
    with serving(FakeAnthropic()) as model:
        try:
            yield model
        finally:
            model.latency = 0.0


@contextmanager
def serving_slack() -> Iterator[FakeSlack]:
    """A loopback Slack Web API."""
    with serving(FakeSlack()) as slack:
        yield slack


# Logged once the Events API endpoint listens; the process binds port 0 and says which it got.
LISTENING = re.compile(r"listening for Events API requests on http://[\w.:]+?:(\d+)/slack/events")


class SlackRun:
    """One `archbot run` process in Slack HTTP mode, with its own port and log file."""

    def __init__(
        self,
        tmp: Path,
        slack: FakeSlack,
        model: FakeAnthropic,
        *,
        db: Path | None = None,
        name: str = "archbot",
        wait: bool = True,
        **env: str,
    ) -> None:
        # Port 0: a port picked here would be free only until someone else bound it.
        self.port = 0
        self.slack = slack
        self.log_path = tmp / f"{name}.log"
        self.db = db or tmp / "a.db"
        environment = clean_env(
            ARCHBOT_SLACK__ENABLED="true",
            ARCHBOT_SLACK__MODE="http",
            ARCHBOT_SLACK__PORT="0",
            ARCHBOT_SLACK__API_URL=f"{slack.url}/api/",
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            ANTHROPIC_BASE_URL=model.url,  # type: ignore[attr-defined]
            ANTHROPIC_API_KEY=MODEL_KEY,
            ARCHBOT_STORAGE__PATH=str(self.db),
            **env,
        )
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_until(self.listening, what="archbot to listen on /slack/events", within=STARTUP)

    def __enter__(self) -> SlackRun:
        return self

    def __exit__(self, *exc: object) -> None:
        """Leaving the block stops the process cleanly (exit 0, no secret, no traceback)."""
        self.stop_cleanly()

    def listening(self) -> bool:
        """True once /slack/events accepts connections; fails if the process died."""
        if self.proc.poll() is not None:
            raise AssertionError(f"archbot run exited {self.proc.returncode}:\n{self.text()}")
        if not self.port:
            found = LISTENING.search(self.text())
            if found is None:
                return False
            self.port = int(found.group(1))
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def send(
        self,
        body: dict[str, Any],
        *,
        retry: int | None = None,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
    ) -> tuple[int, float]:
        """POST a signed event; return (HTTP status, seconds to the acknowledgement)."""
        self.slack.note_event(body)
        raw, headers = event_request(body, secret, retry=retry, timestamp=timestamp)
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/slack/events", data=raw, headers=headers, method="POST"
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return response.status, time.monotonic() - started
        except urllib.error.HTTPError as exc:
            exc.read()
            exc.close()
            return exc.code, time.monotonic() - started

    def text(self) -> str:
        """What the process has logged so far."""
        self.log.flush()
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to drain."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            self.log.close()

    def stop_cleanly(self, *, tracebacks: bool = False) -> None:
        """Stop; assert exit 0, no secret in the log and (unless allowed) no traceback."""
        code = self.stop()
        log = self.log_path.read_text()
        assert code == 0, log
        assert not any(secret in log for secret in SECRETS), log
        if not tracebacks:
            assert "Traceback" not in log, log
