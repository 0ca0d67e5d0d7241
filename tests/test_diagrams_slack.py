"""Issue 14 acceptance in Slack, as a new user would see it: `archbot run` (a subprocess)
against the loopback Slack Web API and a scripted model. An answer's Mermaid flowchart arrives
as text, then as a PNG uploaded to the same thread; a broken one stays code and uploads nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import FakeSlack, SlackUpload, event_body
from tests.slack_run import SlackRun, serving_model, serving_slack
from tests.test_diagrams import BROKEN, FLOW
from tests.test_slack_acceptance import replies

CHANNEL = "C0DIAGRAM"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def model() -> Iterator[FakeAnthropic]:
    with serving_model() as fake:
        yield fake


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with serving_slack() as fake:
        yield fake


@pytest.fixture
def archbot(tmp_path: Path, slack: FakeSlack, model: FakeAnthropic) -> Iterator[SlackRun]:
    with SlackRun(tmp_path, slack, model) as bot:
        yield bot


def mention(archbot: SlackRun, text: str, thread_ts: str | None = None) -> tuple[str, float]:
    body = event_body("app_mention", channel=CHANNEL, text=f"<@U0BOT0001> {text}")
    if thread_ts is not None:
        body["event"]["thread_ts"] = thread_ts
    status, elapsed = archbot.send(body)
    assert status == 200
    return str(body["event"]["ts"]), elapsed


def test_a_flowchart_is_uploaded_to_the_thread_and_a_broken_one_stays_code(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    model.reply_text(f"The trading platform:\n\n```mermaid\n{FLOW}\n```\n\nStart with the gateway.")
    root, _ = mention(archbot, "draw the trading platform")
    [answer] = replies(slack, CHANNEL, root)
    assert "```mermaid" in answer.text or "flowchart LR" in answer.text  # the source stays

    # While that diagram renders, Slack's acknowledgements stay fast.
    model.reply_text("noted")
    _, elapsed = mention(archbot, "and the risk engine?", root)
    assert elapsed < 1.0

    def uploaded() -> list[SlackUpload]:
        return slack.uploaded_files()

    [upload] = wait_until(uploaded, what="the diagram upload")
    assert (upload.channel, upload.thread_ts) == (CHANNEL, root)
    assert upload.filename.endswith(".png")
    assert upload.content is not None and upload.content.startswith(PNG)
    assert len(upload.content) > 5_000
    [asked] = [c for c in slack.calls if c.method == "files.getUploadURLExternal"]
    assert asked.args.get("alt_txt") == "Diagram: Diagram 1"  # screen readers say what it is
    replies(slack, CHANNEL, root, count=2)

    model.reply_text(f"A draft:\n\n```mermaid\n{BROKEN}\n```")
    other, _ = mention(archbot, "draw the draft")
    [draft] = replies(slack, CHANNEL, other)
    assert "A draft" in draft.text
    wait_until(lambda: "could not parse" in archbot.text(), what="the parse note in the log")
    # The note is logged once the render is over, before any upload would start.
    assert len(slack.uploaded_files()) == 1
