"""The Slack adapter running in `run_forever` (HTTP and Socket Mode) against a fake Slack Web API
on 127.0.0.1 and the scripted fake model; events arrive as signed Events API requests."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import aiohttp
import pytest

from adapters.runner import run_forever
from adapters.slack import doctor_check
from adapters.slack.thinking import THINKING_REACTION
from bot.errors import ArchbotError, ConfigError
from bot.settings import Secrets, Settings
from bot.signoff import SIGN_OFF
from tests.conftest import eventually, free_port, make_secrets
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_slack import (
    BOT_ID,
    BOT_USER_ID,
    FakeSlack,
    SlackMessage,
    event_body,
    event_request,
    load_payload,
    signed_headers,
)

SIGNING_SECRET = "test-signing-secret-not-real"
BOT_TOKEN = "xoxb-test-not-real"
APP_TOKEN = "xapp-test-not-real"

T = TypeVar("T")


class RunningBot:
    """`archbot run` in-process: run_forever with Slack in HTTP (or socket) mode."""

    def __init__(self, settings: Settings, secrets: Secrets, fake: FakeSlack) -> None:
        self.settings = settings
        self.secrets = secrets
        self.fake = fake
        self.port = settings.slack.port
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[int] | None = None
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> RunningBot:
        self.stop_event = asyncio.Event()
        self.task = asyncio.create_task(run_forever(self.settings, self.secrets, self.stop_event))
        self.session = aiohttp.ClientSession()
        if self.settings.slack.mode == "http":
            await eventually(self._listening, what="the events endpoint to listen")
        else:
            await eventually(
                lambda: self._failed() or self.fake.socket_connected, what="socket mode"
            )
        return self

    def _failed(self) -> bool:
        if self.task is not None and self.task.done():
            self.task.result()  # raises the start-up error
            raise AssertionError("run_forever ended early")
        return False

    def _listening(self) -> bool:
        self._failed()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    async def stop(self) -> int:
        assert self.task is not None
        self.stop_event.set()
        code = await asyncio.wait_for(self.task, 30)
        if self.session is not None:
            await self.session.close()
        return code

    async def send(
        self,
        body: dict[str, Any],
        *,
        retry: int | None = None,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
    ) -> tuple[int, float]:
        """POST a signed Events API request; return (status, seconds until the response)."""
        raw, headers = event_request(body, secret, retry=retry, timestamp=timestamp)
        return await self._post(raw, headers)

    async def command(self, form: dict[str, str]) -> tuple[int, float]:
        """POST a signed slash command."""
        raw = urlencode(form).encode()
        return await self._post(
            raw,
            signed_headers(SIGNING_SECRET, raw, content_type="application/x-www-form-urlencoded"),
        )

    async def _post(self, raw: bytes, headers: dict[str, str]) -> tuple[int, float]:
        assert self.session is not None
        started = time.monotonic()
        async with self.session.post(
            f"http://127.0.0.1:{self.port}/slack/events", data=raw, headers=headers
        ) as r:
            await r.read()
            return r.status, time.monotonic() - started


def slack_settings(tmp_path: Path, fake: FakeSlack, **slack: Any) -> Settings:
    return Settings(
        storage={"path": str(tmp_path / "a.db")},  # type: ignore[arg-type]
        slack={
            "enabled": True,
            "mode": "http",
            "port": free_port(),
            "api_url": f"{fake.url}/api/",
            **slack,
        },  # type: ignore[arg-type]
    )


def slack_secrets(fake_anthropic: FakeAnthropic, **extra: str) -> Secrets:
    base = make_secrets(fake_anthropic)
    values = {
        "ANTHROPIC_API_KEY": base.anthropic_api_key.get_secret_value()
        if base.anthropic_api_key
        else "",
        "ANTHROPIC_BASE_URL": base.anthropic_base_url or "",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        **extra,
    }
    return Secrets(**values)  # type: ignore[arg-type]


async def answered(
    fake: FakeSlack, channel: str, thread_ts: str | None, count: int = 1
) -> list[SlackMessage]:
    """Wait for `count` finished messages (posted or streamed) in a thread (None: top level)."""

    def found() -> list[SlackMessage]:
        messages = fake.thread_messages(channel, thread_ts)
        return messages if len(messages) >= count else []

    return await eventually(found, what=f"a reply in {channel}/{thread_ts}")


async def barrier(bot: RunningBot) -> None:
    """A fresh DM answered after the events under test: they had their chance to be (wrongly) answered."""
    body = event_body("message_im", channel="D0BARRIER", text="barrier")
    status, _ = await bot.send(body)
    assert status == 200
    await answered(bot.fake, "D0BARRIER", None)


# --------------------------------------------------------------------------------------------


async def test_mention_is_acked_at_once_and_answered_in_its_thread(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.latency = 1.5  # a slow model must not delay the ack
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    status, elapsed = await bot.send(body)
    assert status == 200
    assert elapsed < 1.0
    [reply] = await answered(fake_slack, "C0GENERAL", ts)
    text = reply.text
    assert text.startswith("Fake answer to: Alice: should we put features in Redis or Feast?")
    assert text.endswith(SIGN_OFF)
    [post] = fake_slack.posts(thread_ts=ts)  # a short answer is posted: nothing worth streaming
    assert post.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    # Thinking: the assistant status is unavailable on this fake workspace, so a reaction, removed after.
    await eventually(lambda: fake_slack.calls_of("reactions.remove"), what="reaction removed")
    [added] = fake_slack.calls_of("reactions.add")
    assert (added.args["timestamp"], added.args["name"]) == (ts, THINKING_REACTION)
    assert fake_slack.calls_of("reactions.add")[0].at < post.at
    assert len(fake_slack.calls_of("auth.test")) == 1  # at start, not inside an acknowledgement


async def test_assistant_status_is_the_thinking_indicator_where_available(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    fake_slack.assistant_status_supported = True
    body = event_body("app_mention")
    await bot.send(body)
    await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
    [status] = fake_slack.calls_of("assistant.threads.setStatus")
    assert status.args["thread_ts"] == body["event"]["ts"]
    assert status.args["status"]
    assert not fake_slack.calls_of("reactions.add")


async def test_url_verification_challenge_is_answered(bot: RunningBot) -> None:
    assert bot.session is not None
    raw = json.dumps({"token": "x", "challenge": "c0ffee-challenge", "type": "url_verification"})
    headers = signed_headers(SIGNING_SECRET, raw.encode())
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    async with bot.session.post(url, data=raw, headers=headers) as response:
        assert response.status == 200
        assert "c0ffee-challenge" in await response.text()


async def test_forged_and_stale_signatures_get_401_and_no_reply(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    forged = event_body("app_mention", channel="C0FORGED")
    stale = event_body("app_mention", channel="C0STALE")
    assert (await bot.send(forged, secret="not-the-secret"))[0] == 401
    assert (await bot.send(stale, timestamp=int(time.time()) - 600))[0] == 401
    await barrier(bot)
    assert not fake_slack.messages_in("C0FORGED")
    assert not fake_slack.messages_in("C0STALE")


async def test_redeliveries_and_the_message_twin_are_answered_once(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    twin = event_body("message_channel_with_mention", ts=ts)  # same message, its own event_id
    assert (await bot.send(body))[0] == 200
    assert (await bot.send(twin))[0] == 200
    assert (await bot.send(body, retry=1))[0] == 200
    await answered(fake_slack, "C0GENERAL", ts)
    assert (await bot.send(body, retry=2))[0] == 200
    # Inside the thread it has joined, a mention's message twin would be a follow-up: still once.
    in_thread = event_body("app_mention", thread_ts=ts, text="<@U0BOT0001> and the cost?")
    in_thread_twin = event_body(
        "message_thread_followup",
        ts=in_thread["event"]["ts"],
        thread_ts=ts,
        text=in_thread["event"]["text"],
    )
    assert (await bot.send(in_thread_twin))[0] == 200
    assert (await bot.send(in_thread))[0] == 200
    await answered(fake_slack, "C0GENERAL", ts, count=2)
    await barrier(bot)
    assert len(fake_slack.thread_messages("C0GENERAL", ts)) == 2
    # One model call each: the mention, the mention inside the thread, the barrier.
    assert len(fake_anthropic.message_requests) == 3


async def test_a_redelivery_after_a_restart_is_not_answered_again(
    tmp_path: Path, fake_anthropic: FakeAnthropic, fake_slack: FakeSlack
) -> None:
    settings, secrets = slack_settings(tmp_path, fake_slack), slack_secrets(fake_anthropic)
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    first = await RunningBot(settings, secrets, fake_slack).start()
    await first.send(body)
    await answered(fake_slack, "C0GENERAL", ts)
    assert await first.stop() == 0
    second = await RunningBot(settings, secrets, fake_slack).start()
    try:
        assert (await second.send(body, retry=1))[0] == 200
        await barrier(second)
    finally:
        assert await second.stop() == 0
    assert len(fake_slack.thread_messages("C0GENERAL", ts)) == 1


async def test_thread_follow_up_without_mention_is_answered_but_bots_are_not(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    mention = event_body("app_mention")
    root = mention["event"]["ts"]
    await bot.send(mention)
    await answered(fake_slack, "C0GENERAL", root)
    # People in the thread: answered without a mention. Bots (itself included) and chatter: never.
    own = event_body("message_own_bot", thread_ts=root)
    other = event_body("message_other_bot", thread_ts=root)
    chatter = event_body("message_channel_top_level")
    unknown_thread = event_body("message_thread_followup", thread_ts="1111111111.000001")
    for ignored in (own, other, chatter, unknown_thread):
        assert (await bot.send(ignored))[0] == 200
    follow_up = event_body("message_thread_followup", thread_ts=root)
    await bot.send(follow_up)
    replies = await answered(fake_slack, "C0GENERAL", root, count=2)
    assert "point-in-time correctness" in replies[1].text
    await barrier(bot)
    assert len(fake_slack.thread_messages("C0GENERAL", root)) == 2
    assert not fake_slack.thread_messages("C0GENERAL", "1111111111.000001")
    assert not fake_slack.thread_messages("C0GENERAL", chatter["event"]["ts"])
    assert all(m.thread_ts for m in fake_slack.messages_in("C0GENERAL"))


async def test_called_into_a_running_discussion_it_reads_the_thread_once(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    replies = load_payload("conversations_replies")["messages"]
    fake_slack.threads[("C0GENERAL", "1764150100.000200")] = replies
    mention = event_body("app_mention_in_thread", ts="1764150300.000500")
    await bot.send(mention)
    await answered(fake_slack, "C0GENERAL", "1764150100.000200")
    [read] = fake_slack.calls_of("conversations.replies")
    assert read.args["ts"] == "1764150100.000200"
    sent = json.dumps(fake_anthropic.message_requests[-1].body["messages"])
    assert "move the tick store from Postgres to ClickHouse" in sent
    assert "4 TB of ticks" in sent
    again = event_body("app_mention_in_thread", text="<@U0BOT0001> and the backfill?")
    await bot.send(again)
    await answered(fake_slack, "C0GENERAL", "1764150100.000200", count=2)
    assert len(fake_slack.calls_of("conversations.replies")) == 1


async def test_dm_is_answered_in_the_dm(bot: RunningBot, fake_slack: FakeSlack) -> None:
    body = event_body("message_im")
    await bot.send(body)
    [reply] = await answered(fake_slack, "D0ALICEDM", None)
    assert "version our training data" in reply.text
    assert reply.text.endswith(SIGN_OFF)


async def test_broadcast_mentions_from_the_model_are_neutralised(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text(
        "Tell <!channel> and <!here> and <!everyone> and <!subteam^S0PLAT|@platform>."
    )
    body = event_body("app_mention")
    await bot.send(body)
    [reply] = await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
    text = reply.text
    assert "<!" not in text
    for word in ("@channel", "@here", "@everyone", "@platform"):
        assert word not in text
    assert "@\u200bchannel" in text and "@\u200bplatform" in text


def long_answer() -> str:
    code = "\n".join(
        f"    step_{i:03d} = pipeline.run(batch={i})  # stage {i} of the backfill"
        for i in range(400)
    )
    prose = "\n\n".join(
        f"Section {i}. " + "Weigh latency against cost and operability. " * 12 for i in range(45)
    )
    return f"{prose}\n\n```python\ndef backfill():\n{code}\n```\n\nThat is the plan."


async def test_a_30000_character_answer_arrives_whole_with_closed_fences(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    answer = long_answer()
    assert len(answer) >= 30_000
    fake_anthropic.reply_text(answer)
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    await bot.send(body)
    messages = await eventually(
        lambda: [m for m in fake_slack.thread_messages("C0GENERAL", ts) if SIGN_OFF in m.text],
        what="the last part",
    )
    messages = fake_slack.thread_messages("C0GENERAL", ts)
    parts = [m.text for m in messages]
    assert len(parts) >= 3
    # The start is streamed as the model writes; what outgrows one message is posted after it.
    assert messages[0].streamed and not any(m.streamed for m in messages[1:])
    assert_whole_parts(parts)
    joined = "\n".join(parts)
    for i in range(400):
        assert joined.count(f"step_{i:03d} = pipeline.run(batch={i})") == 1
    assert "Section 44." in joined and "That is the plan." in joined


def assert_whole_parts(parts: list[str]) -> None:
    """Every part within Slack's limit, every fence closed, the sign-off once at the very end."""
    assert all(len(p) <= 12_000 for p in parts)
    for p in parts:
        fences = [line for line in p.split("\n") if line.lstrip().startswith("```")]
        assert len(fences) % 2 == 0, "a part leaves a code fence open"
    assert [SIGN_OFF in p for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].endswith(SIGN_OFF) and "".join(parts).count(SIGN_OFF) == 1


async def test_a_429_on_posting_is_retried_after_retry_after(
    bot: RunningBot, fake_slack: FakeSlack
) -> None:
    fake_slack.fail_next("chat.postMessage", 429, retry_after=1)
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    await bot.send(body)
    [reply] = await answered(fake_slack, "C0GENERAL", ts)
    tries = [c for c in fake_slack.calls_of("chat.postMessage") if c.args.get("thread_ts") == ts]
    assert [c.status for c in tries] == [429, 200]
    assert reply.at - tries[0].at >= 1.0


async def test_a_failed_post_is_logged_with_the_thread_and_posted_after_restart(
    tmp_path: Path,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, secrets = slack_settings(tmp_path, fake_slack), slack_secrets(fake_anthropic)
    fake_slack.fail_next("chat.postMessage", 200, error="channel_not_found")
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    key = f"slack/T0TEAM001/C0GENERAL/{ts}"
    first = await RunningBot(settings, secrets, fake_slack).start()
    with caplog.at_level(logging.ERROR, logger="adapters.slack"):
        await first.send(body)
        record = await eventually(
            lambda: [r for r in caplog.records if key in r.getMessage()], what="the failure log"
        )
    assert "channel_not_found" in record[0].getMessage()
    assert BOT_TOKEN not in caplog.text
    assert await first.stop() == 0
    with sqlite3.connect(settings.storage.path) as db:
        rows = db.execute("SELECT reply, posted_at FROM turns").fetchall()
    assert len(rows) == 1 and rows[0][0].endswith(SIGN_OFF) and rows[0][1] is None
    second = await RunningBot(settings, secrets, fake_slack).start()
    try:
        [reply] = await answered(fake_slack, "C0GENERAL", ts)
        assert reply.text == rows[0][0]
    finally:
        assert await second.stop() == 0


async def test_slash_command_maps_onto_bang_commands(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    form = {k: str(v) for k, v in load_payload("slash_command").items()}
    form["response_url"] = f"{fake_slack.url}/commands/T0TEAM001/1/ok"
    status, elapsed = await bot.command(form)
    assert status == 200 and elapsed < 3.0
    [added] = await eventually(lambda: list(fake_slack.responses), what="the command's response")
    assert added.args["response_type"] == "in_channel"
    assert "Pick a feature store" in added.args["blocks"][0]["text"]
    form.update(
        text="todos", trigger_id="2.2.2", response_url=f"{fake_slack.url}/commands/T0TEAM001/2/ok"
    )
    await bot.command(form)
    await eventually(lambda: len(fake_slack.responses) >= 2, what="the todos response")
    assert "Pick a feature store" in fake_slack.responses[1].args["blocks"][0]["text"]
    form.update(
        text="frobnicate",
        trigger_id="3.3.3",
        response_url=f"{fake_slack.url}/commands/T0TEAM001/3/ok",
    )
    await bot.command(form)
    await eventually(lambda: len(fake_slack.responses) >= 3, what="the error response")
    assert fake_slack.responses[2].args["response_type"] == "ephemeral"
    assert "!help" in fake_slack.responses[2].args["blocks"][0]["text"]
    assert not fake_anthropic.message_requests  # commands never call the model


async def test_bang_command_in_a_mention(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    body = event_body("app_mention", text="<@U0BOT0001> !todo add Measure p99 latency")
    await bot.send(body)
    [reply] = await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
    assert "Measure p99 latency" in reply.text
    assert not fake_anthropic.message_requests


async def test_socket_mode_answers_and_acks(
    tmp_path: Path, fake_anthropic: FakeAnthropic, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(tmp_path, fake_slack, mode="socket")
    running = await RunningBot(
        settings, slack_secrets(fake_anthropic, SLACK_APP_TOKEN=APP_TOKEN), fake_slack
    ).start()
    try:
        [opened] = fake_slack.calls_of("apps.connections.open")
        assert opened.headers["Authorization"] == f"Bearer {APP_TOKEN}"
        body = event_body("app_mention")
        fake_slack.send_socket_event(body, "env-1")
        fake_slack.send_socket_event(body, "env-2", retry_attempt=1)
        await eventually(
            lambda: {a.get("envelope_id") for a in fake_slack.socket_acks} >= {"env-1", "env-2"},
            what="both envelopes acknowledged",
        )
        [reply] = await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
        assert reply.text.endswith(SIGN_OFF)
    finally:
        assert await running.stop() == 0


async def test_doctor_calls_auth_test(
    tmp_path: Path, fake_anthropic: FakeAnthropic, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(tmp_path, fake_slack)
    line = await doctor_check(settings, slack_secrets(fake_anthropic))
    assert line is not None and "@archbot" in line and "T0TEAM001" in line
    assert fake_slack.calls_of("auth.test")
    assert await doctor_check(Settings(), slack_secrets(fake_anthropic)) is None  # not enabled
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        await doctor_check(settings, slack_secrets(fake_anthropic, SLACK_SIGNING_SECRET=""))
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        await doctor_check(
            slack_settings(tmp_path, fake_slack, mode="socket"), slack_secrets(fake_anthropic)
        )
    fake_slack.fail_next("auth.test", 200, error="invalid_auth")
    with pytest.raises(ArchbotError, match="invalid_auth") as info:
        await doctor_check(settings, slack_secrets(fake_anthropic))
    assert BOT_TOKEN not in str(info.value)


def test_fake_answers_auth_test_with_user_and_bot_ids(fake_slack: FakeSlack) -> None:
    from slack_sdk import WebClient

    auth = WebClient(token=BOT_TOKEN, base_url=f"{fake_slack.url}/api/").auth_test(
        team_id="T0TEAM001"
    )
    assert (auth["user_id"], auth["bot_id"]) == (BOT_USER_ID, BOT_ID)
    assert fake_slack.calls_of("auth.test")[0].args["team_id"] == "T0TEAM001"  # query string merged


async def test_a_delivery_that_failed_before_it_was_recorded_is_processed_on_retry(
    tmp_path: Path,
    fake_anthropic: FakeAnthropic,
    fake_slack: FakeSlack,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapters.slack import create_adapter
    from bot.app import build_core

    core = build_core(slack_settings(tmp_path, fake_slack), slack_secrets(fake_anthropic))
    real_handle = core.consultant.handle
    failures = [RuntimeError("database is locked")]

    async def flaky_handle(msg: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()  # fails before the core records the event
        return await real_handle(msg, **kwargs)

    monkeypatch.setattr(core.consultant, "handle", flaky_handle)
    adapter = create_adapter(core)
    await adapter.start()
    running = RunningBot(core.settings, core.secrets, fake_slack)
    running.session = aiohttp.ClientSession()
    try:
        body = event_body("app_mention")
        ts = body["event"]["ts"]
        with caplog.at_level(logging.ERROR, logger="adapters.slack"):
            await running.send(body)
            await eventually(lambda: "database is locked" in caplog.text, what="the failure")
        await eventually(
            lambda: fake_slack.calls_of("reactions.remove"), what="the indicator removed"
        )
        assert not fake_slack.thread_messages("C0GENERAL", ts)
        await running.send(body, retry=1)
        [reply] = await answered(fake_slack, "C0GENERAL", ts)
        assert reply.text.endswith(SIGN_OFF)
    finally:
        await running.session.close()
        await adapter.stop()
        await core.aclose()


async def test_outbox_opens_a_thread_for_top_level_posts_and_continues_in_it(
    fake_slack: FakeSlack,
) -> None:
    from adapters.slack.client import make_client
    from adapters.slack.outbox import SlackOutbox

    outbox = SlackOutbox(make_client(BOT_TOKEN, f"{fake_slack.url}/api"))
    text = "\n\n".join(f"Paragraph {i}: " + "risk and focus for the week. " * 60 for i in range(20))
    first = await outbox.post("C0CHECKIN", None, f"{text}\n\n{SIGN_OFF}")
    posts = fake_slack.posts(channel="C0CHECKIN")
    assert len(posts) >= 2
    assert "thread_ts" not in posts[0].args  # the check-in opens a thread ...
    assert all(p.args["thread_ts"] == first for p in posts[1:])  # ... and continues in it
    assert posts[-1].args["markdown_text"].endswith(SIGN_OFF)
    # A DM's main timeline (thread == channel) is answered top-level.
    await outbox.post("D0ALICEDM", "D0ALICEDM", "short")
    [dm] = fake_slack.posts(channel="D0ALICEDM")
    assert "thread_ts" not in dm.args


# streaming ----------------------------------------------------------------------------------


def stored_reply(bot: RunningBot) -> str:
    """The one answer the core stored (what the user must see, whole and once)."""
    with sqlite3.connect(bot.settings.storage.path) as db:
        [(reply,)] = db.execute("SELECT reply FROM turns WHERE reply IS NOT NULL").fetchall()
    return str(reply)


ROUND_TEXTS = (
    "Start with the access pattern. ",
    "Then size the online store. ",
    "Next, settle the freshness budget. ",
    "Finally, plan the backfill. ",
)


def script_rounds(fake_anthropic: FakeAnthropic, rounds: int = 3, latency: float = 0.8) -> None:
    """An answer written in `rounds` rounds with tool calls between them; each takes `latency`."""
    fake_anthropic.latency = latency
    for i, text in enumerate(ROUND_TEXTS[: rounds - 1]):
        fake_anthropic.reply_tool_use("add_todo", {"title": f"Step {i}"}, text=text * 20)
    fake_anthropic.reply_text(ROUND_TEXTS[-1] * 20)


def words(text: str) -> list[str]:
    return text.split()


async def test_the_answer_streams_into_the_thread_while_the_model_is_still_writing(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    script_rounds(fake_anthropic, rounds=4, latency=0.7)
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    await bot.send(body)
    [reply] = await answered(fake_slack, "C0GENERAL", ts)
    assert reply.streamed
    # The stored answer joins the rounds' stripped text; the stream may differ in whitespace only.
    assert words(reply.text) == words(stored_reply(bot))
    assert reply.text.count("Start with the access pattern.") == 20  # not repeated at the end
    assert reply.text.startswith("Start with the access pattern.") and reply.text.endswith(SIGN_OFF)
    assert not fake_slack.posts(thread_ts=ts)
    [start] = fake_slack.calls_of("chat.startStream")
    appends = fake_slack.calls_of("chat.appendStream")
    [stop] = fake_slack.calls_of("chat.stopStream")
    assert (start.args["thread_ts"], start.args["recipient_user_id"]) == (ts, "U0ALICE01")
    assert start.args["recipient_team_id"] == "T0TEAM001"
    # Visible in pieces while the model was still writing its later rounds (0.7 s each) ...
    assert len(appends) >= 2
    assert stop.at - appends[1].at >= 0.4
    assert stop.at - start.at >= 1.5
    # ... batched, not one call per delta.
    assert len(appends) + 2 <= 10
    # The thinking indicator went away when the first chunk showed, not at the end.
    [removed] = fake_slack.calls_of("reactions.remove")
    assert start.at <= removed.at < stop.at


async def test_without_streaming_in_the_workspace_replies_are_posted_and_it_is_not_retried(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    fake_slack.stream_error = "unknown_method"
    fake_anthropic.reply_text("Shard by tenant, then by day. " * 100)
    fake_anthropic.reply_text("Keep the hot set in memory. " * 100)
    first = event_body("app_mention")
    await bot.send(first)
    [reply] = await answered(fake_slack, "C0GENERAL", first["event"]["ts"])
    assert not reply.streamed
    assert reply.text == stored_reply(bot)
    second = event_body("app_mention", text="<@U0BOT0001> and the cache?")
    await bot.send(second)
    [again] = await answered(fake_slack, "C0GENERAL", second["event"]["ts"])
    assert not again.streamed and again.text.startswith("Keep the hot set in memory.")
    assert len(fake_slack.calls_of("chat.startStream")) == 1  # remembered for the workspace
    assert not fake_slack.calls_of("chat.appendStream")


@pytest.mark.parametrize("failing", ["chat.appendStream", "chat.stopStream"])
async def test_a_stream_that_breaks_midway_still_delivers_the_whole_answer_once(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic, failing: str
) -> None:
    script_rounds(fake_anthropic, rounds=3, latency=0.6)
    fake_slack.fail_next(failing, 200, error="internal_error")
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    await bot.send(body)
    await eventually(
        lambda: any(m.text.endswith(SIGN_OFF) for m in fake_slack.thread_messages("C0GENERAL", ts)),
        what="the end of the answer",
    )
    messages = fake_slack.thread_messages("C0GENERAL", ts)
    assert len(messages) >= 2 and messages[0].streamed
    assert not any(m.streamed for m in messages[1:])
    assert fake_slack.calls_of(failing)[0].ok is False
    # Whole and once: what was streamed plus what was posted reads as the stored answer.
    assert words("".join(m.text for m in messages)) == words(stored_reply(bot))
    assert messages[-1].text.endswith(SIGN_OFF)
    assert not any(m.streaming for m in fake_slack.messages_in("C0GENERAL"))


async def test_broadcasts_are_neutralised_even_when_they_straddle_streamed_chunks(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    # 400-character deltas from the model cut many of these tokens in two.
    steps = 150
    fake_anthropic.reply_text(
        " ".join(
            f"Step {i}: tell <!channel>, <!here> and <!subteam^S0PLAT|@platform>."
            for i in range(steps)
        )
    )
    body = event_body("app_mention")
    await bot.send(body)
    messages = await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
    assert messages[0].streamed
    text = "".join(m.text for m in messages)
    assert "<!" not in text
    for word in ("@channel", "@here", "@platform"):
        assert word not in text
    for word in ("@\u200bchannel", "@\u200bhere", "@\u200bplatform"):
        assert text.count(word) == steps
    for call in fake_slack.calls_of("chat.startStream") + fake_slack.calls_of("chat.appendStream"):
        assert "<!" not in call.args["markdown_text"]


async def test_a_code_block_that_outgrows_the_stream_is_closed_there_and_reopened_after(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    code = [
        f"    shard_{i:03d} = route(key, ring={i})  # placement of shard {i}" for i in range(400)
    ]
    answer = "Here is the router.\n\n```python\ndef route_all():\n" + "\n".join(code)
    fake_anthropic.reply_text(f"{answer}\n```\n\nRoll it out shard by shard.")
    body = event_body("app_mention")
    ts = body["event"]["ts"]
    await bot.send(body)
    await eventually(
        lambda: any(SIGN_OFF in m.text for m in fake_slack.thread_messages("C0GENERAL", ts)),
        what="the last part",
    )
    messages = fake_slack.thread_messages("C0GENERAL", ts)
    parts = [m.text for m in messages]
    assert messages[0].streamed and len(parts) >= 3
    assert_whole_parts(parts)
    assert parts[0].endswith("\n```")  # the stream closed the fence it stopped inside ...
    assert parts[1].startswith("```python\n")  # ... and the next part reopened it
    lines = "\n".join(parts).split("\n")
    assert [line for line in lines if line.startswith("    shard_")] == code
    assert "Roll it out shard by shard." in parts[-1]


async def test_a_429_while_streaming_is_retried_after_retry_after(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    fake_slack.fail_next("chat.startStream", 429, retry_after=1)
    fake_anthropic.reply_text("Partition by hour and compact nightly. " * 60)
    body = event_body("app_mention")
    await bot.send(body)
    [reply] = await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
    assert reply.streamed and reply.text == stored_reply(bot)
    tries = fake_slack.calls_of("chat.startStream")
    assert [c.status for c in tries] == [429, 200]
    assert tries[1].at - tries[0].at >= 1.0


async def test_dms_stream_inside_threads_and_post_on_the_main_timeline(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("Version the data with the model. " * 40)
    fake_anthropic.reply_text("Pin the snapshot per training run. " * 40)
    top = event_body("message_im")
    await bot.send(top)
    [posted] = await answered(fake_slack, "D0ALICEDM", None)
    assert not posted.streamed  # a DM's main timeline has no thread to stream into
    assert not fake_slack.calls_of("chat.startStream")
    in_thread = event_body("message_im_thread")
    thread_ts = in_thread["event"]["thread_ts"]
    await bot.send(in_thread)
    [streamed] = await answered(fake_slack, "D0ALICEDM", thread_ts)
    assert streamed.streamed and streamed.text.startswith("Pin the snapshot per training run.")
    [start] = fake_slack.calls_of("chat.startStream")
    assert start.args["thread_ts"] == thread_ts


async def test_a_model_failure_after_streamed_text_ends_the_same_message_with_the_notice(
    bot: RunningBot, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_tool_use(
        "add_todo", {"title": "Measure p99"}, text="Let me look at the ingest path first. " * 20
    )
    fake_anthropic.reply_error(400, "invalid_request_error", "prompt is too long")
    body = event_body("app_mention")
    await bot.send(body)
    [reply] = await answered(fake_slack, "C0GENERAL", body["event"]["ts"])
    assert reply.streamed
    notice = stored_reply(bot)
    assert reply.text.startswith("Let me look at the ingest path first.")
    assert reply.text.endswith("\n\n" + notice)  # shown text, then the notice, once
    assert reply.text.count(SIGN_OFF) == 1
