"""Issue 12 acceptance in Slack, tried as a new user would: `archbot run` (a subprocess) in HTTP
mode against the loopback Slack Web API and a scripted model. A storage decision is reached in a
thread; `!summary`, `!adr` (posted and uploaded as Markdown), `!adr list`, then the export."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import FakeSlack, SlackUpload, event_body
from tests.slack_run import SlackRun, serving_model, serving_slack
from tests.test_decisions import STORAGE_DECISION
from tests.test_slack_acceptance import replies

CHANNEL = "C0STORAGE"
FILE_NAME = "0001-store-ticks-as-parquet-on-s3-partitioned-by-day.md"


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


def mention(archbot: SlackRun, text: str, thread_ts: str | None) -> str:
    body = event_body("app_mention", channel=CHANNEL, text=f"<@U0BOT0001> {text}")
    if thread_ts is not None:
        body["event"]["thread_ts"] = thread_ts
    assert archbot.send(body)[0] == 200
    return str(body["event"]["ts"])


def test_summary_adr_upload_list_and_export_in_a_slack_thread(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic, tmp_path: Path
) -> None:
    model.reply_text("At 2 TB a month: Parquet on S3 (cheap scans) or TimescaleDB (lookups).")
    root = mention(archbot, "where should we store 2 TB of ticks a month?", None)
    replies(slack, CHANNEL, root)
    model.reply_text("Agreed: Parquet on S3, partitioned by day. Still open: live lookups.")
    mention(archbot, "let's go with Parquet on S3, by day", root)
    replies(slack, CHANNEL, root, count=2)

    model.reply_text(
        "### Decisions\n- Store ticks as Parquet on S3, partitioned by day.\n\n"
        "### Open questions\n- How to serve live lookups."
    )
    mention(archbot, "!summary", root)
    summary = replies(slack, CHANNEL, root, count=3)[2].text
    assert "Store ticks as Parquet on S3" in summary and "How to serve live lookups" in summary
    assert "### Todos" in summary

    model.reply_tool_use("record_decision", STORAGE_DECISION)
    mention(archbot, "!adr", root)
    posted = replies(slack, CHANNEL, root, count=4)[3].text
    assert "# 1. Store ticks as Parquet on S3, partitioned by day" in posted

    def uploaded() -> list[SlackUpload]:
        return slack.uploaded_files()

    [upload] = wait_until(uploaded, what="the ADR upload")
    assert upload.filename == FILE_NAME and (upload.channel, upload.thread_ts) == (CHANNEL, root)
    assert upload.content is not None
    text = upload.content.decode()
    assert text.startswith("# 1. Store ticks as Parquet on S3") and "## Consequences" in text
    assert text.strip() in posted

    listing_ts = mention(archbot, "!adr list", None)
    listing = replies(slack, CHANNEL, listing_ts)[0].text
    link = f"https://acme.slack.com/archives/{CHANNEL}/p{root.replace('.', '')}"
    assert "| 0001 | Store ticks as Parquet on S3, partitioned by day | accepted |" in listing
    assert link in listing

    env = {"ARCHBOT_STORAGE__PATH": str(tmp_path / "a.db")}
    done = run_cli(["adr", "export", "docs/adr"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    exported = (tmp_path / "docs" / "adr" / FILE_NAME).read_text()
    assert exported.startswith("# 1. Store ticks as Parquet on S3") and link in exported


def test_an_upload_without_files_write_is_said_in_the_thread(
    archbot: SlackRun, slack: FakeSlack, model: FakeAnthropic
) -> None:
    slack.scopes.discard("files:write")
    model.reply_text("Parquet on S3 it is.")
    root = mention(archbot, "we decided: Parquet on S3", None)
    replies(slack, CHANNEL, root)
    model.reply_tool_use("record_decision", STORAGE_DECISION)
    mention(archbot, "!adr", root)
    texts = [m.text for m in replies(slack, CHANNEL, root, count=3)]
    assert "# 1. Store ticks" in texts[1]
    assert f"could not attach `{FILE_NAME}`" in texts[2] and "files:write" in texts[2]
    assert slack.uploaded_files() == []
    [refused] = slack.calls_of("files.getUploadURLExternal")
    assert not refused.ok
