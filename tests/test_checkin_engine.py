"""Check-in runs in-process against loopback Slack, Discord, GitHub and the scripted model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.runner import checkin_service
from adapters.slack.checkin import create_poster
from bot.app import Core, build_core
from bot.checkins import content
from bot.checkins.engine import CheckinService
from bot.checkins.scheduler import build_scheduler, job_id
from bot.events import IncomingMessage
from bot.settings import Secrets
from bot.signoff import SIGN_OFF, ends_with_sign_off_once
from tests.conftest import FAKE_KEY, eventually, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_github import FakeGitHub, FakePull, trading_repo
from tests.fakes.fake_slack import TEAM_ID, FakeSlack

CHANNEL = "C0ARCH001"
REPO = "acme/trading"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    yield from serve_github()


def serve_github() -> Iterator[FakeGitHub]:
    """A loopback GitHub with a PR merged yesterday and one merged two months ago."""
    fake = trading_repo(FakeGitHub(), REPO)
    now = datetime.now(UTC).replace(microsecond=0)
    fake.add_pull(
        REPO,
        FakePull(
            51,
            "Stream ticks through Kafka",
            "ana",
            now - timedelta(days=1),
            ["src/ingest/kafka.py"],
        ),
    )
    fake.add_pull(
        REPO,
        FakePull(3, "Initial pandas prototype", "bo", now - timedelta(days=60), ["proto/p.py"]),
    )
    server = ServerThread(fake.app()).start()
    fake.url = server.url  # type: ignore[attr-defined]
    try:
        yield fake
    finally:
        server.stop()


@dataclass
class Env:
    core: Core
    service: CheckinService


def secrets_for(
    model: FakeAnthropic | None, slack: FakeSlack | None = None, discord: FakeDiscord | None = None
) -> Secrets:
    values: dict[str, Any] = {"SLACK_BOT_TOKEN": "xoxb-test-not-real"}
    if model is not None:
        values["ANTHROPIC_API_KEY"] = FAKE_KEY
        values["ANTHROPIC_BASE_URL"] = model.url  # type: ignore[attr-defined]
    if discord is not None:
        values["DISCORD_TOKEN"] = discord.valid_token
    return Secrets(**values)


def settings_for(tmp_path: Path, github: FakeGitHub, slack: FakeSlack, **checkin: Any) -> Any:
    entry = {
        "name": "weekly-architecture",
        "platform": "slack",
        "channel": CHANNEL,
        "repo": REPO,
        "cron": "0 9 * * mon",
        "timezone": "Europe/London",
    } | checkin
    return make_settings(
        tmp_path,
        slack={"api_url": f"{slack.url}/api/"},
        github={"api_url": github.url},  # type: ignore[attr-defined]
        checkins=[entry],  # type: ignore[dict-item]
    )


@pytest.fixture
async def env(
    tmp_path: Path, github: FakeGitHub, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> AsyncIterator[Env]:
    core = build_core(settings_for(tmp_path, github, fake_slack), secrets_for(fake_anthropic))
    service = checkin_service(core)
    service.backoff = (0.0, 0.0, 0.0)
    try:
        yield Env(core, service)
    finally:
        await service.aclose()
        await core.aclose()


def add_open_todo(core: Core, thread_ts: str = "1700000000.000100") -> None:
    store = core.store
    thread = store.ensure_thread(
        f"slack/{TEAM_ID}/{CHANNEL}/{thread_ts}",
        platform="slack",
        workspace=TEAM_ID,
        channel=CHANNEL,
        thread=thread_ts,
        channel_key=f"slack/{TEAM_ID}/{CHANNEL}",
    )
    store.add_todo(thread.id, "Pick a feature store")
    done = store.add_todo(thread.id, "Already settled question")
    store.update_todo(thread.id, done.number, status="done")


def top_level(slack: FakeSlack) -> list[Any]:
    return [m for m in slack.messages if m.channel == CHANNEL and m.thread_ts is None]


async def test_a_run_posts_activity_todos_review_and_sign_off_once(
    env: Env, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    add_open_todo(env.core)
    fake_anthropic.reply_text(
        "**Risks**: the Kafka consumer has no backpressure.\n\nDone. What are we tackling next?"
    )
    outcome = await env.service.run("weekly-architecture")
    assert outcome.status == "posted", outcome
    [message] = top_level(fake_slack)
    text = message.text
    assert "#51 Stream ticks through Kafka" in text  # merged yesterday
    assert "Initial pandas prototype" not in text  # merged two months ago
    assert "Pick a feature store" in text and "Already settled" not in text
    assert f"https://acme.slack.com/archives/{CHANNEL}/p1700000000000100" in text  # todo -> thread
    assert "the Kafka consumer has no backpressure" in text
    assert ends_with_sign_off_once(text) and text.count(SIGN_OFF) == 1
    # The review was a normal tool-offering turn that saw the activity and todos.
    [request] = fake_anthropic.message_requests
    assert request.body["tools"]
    brief = str(request.body["messages"][0])
    assert "Stream ticks through Kafka" in brief and "untrusted_content" in brief
    assert "no previous check-in" in brief
    run = env.core.store.checkin_runs("weekly-architecture")[0]
    assert run.status == "posted" and run.message_id == message.ts
    assert (
        run.permalink == f"https://acme.slack.com/archives/{CHANNEL}/p{message.ts.replace('.', '')}"
    )
    assert run.thread_key == f"slack/{TEAM_ID}/{CHANNEL}/{message.ts}"


async def test_a_second_run_posts_nothing_and_force_posts_again(
    env: Env, fake_slack: FakeSlack
) -> None:
    first = await env.service.run("weekly-architecture")
    second = await env.service.run("weekly-architecture")
    assert (first.status, second.status) == ("posted", "duplicate")
    assert "already posted" in second.detail and first.permalink in second.detail
    assert len(top_level(fake_slack)) == 1
    forced = await env.service.run("weekly-architecture", force=True)
    assert forced.status == "posted"
    assert len(top_level(fake_slack)) == 2


async def test_the_check_in_thread_is_joined_and_a_reply_carries_the_check_in(
    env: Env, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("Focus this week: backpressure on the Kafka consumer.")
    await env.service.run("weekly-architecture")
    [message] = top_level(fake_slack)
    key = f"slack/{TEAM_ID}/{CHANNEL}/{message.ts}"
    assert env.core.consultant.knows_thread(key)  # replies need no mention
    fake_anthropic.reply_text("Start with a bounded queue.")
    reply = await env.core.consultant.handle(
        IncomingMessage(
            "slack", TEAM_ID, CHANNEL, message.ts, "U1", "How do we add backpressure?", "C:1.5"
        )
    )
    assert reply is not None and "bounded queue" in reply.text
    follow_up = fake_anthropic.message_requests[-1].body["messages"]
    assert "Stream ticks through Kafka" in str(follow_up[0])  # the history starts with the check-in
    assert "backpressure on the Kafka consumer" in str(follow_up[1])
    assert "How do we add backpressure?" in str(follow_up[-1])


async def test_the_next_check_in_sees_the_previous_thread_and_the_window_since_it(
    env: Env, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.reply_text("Decision needed: Kafka or Redis Streams.")
    await env.service.run("weekly-architecture")
    fake_anthropic.reply_text("Second week.")
    await env.service.run("weekly-architecture", force=True)
    brief = str(fake_anthropic.message_requests[-1].body["messages"][0])
    assert "Its discussion (decisions and open questions" in brief
    assert "Decision needed: Kafka or Redis Streams." in brief


async def test_posts_that_keep_failing_are_retried_then_recorded(
    env: Env, fake_slack: FakeSlack
) -> None:
    fake_slack.fail_next("chat.postMessage", 200, error="channel_not_found", count=10)
    outcome = await env.service.run("weekly-architecture")
    assert outcome.status == "failed"
    assert "channel_not_found" in outcome.detail and "4 attempts" in outcome.detail
    assert len(fake_slack.calls_of("chat.postMessage")) == 4
    run = env.core.store.checkin_runs("weekly-architecture")[0]
    assert (run.status, run.attempts) == ("failed", 4) and "channel_not_found" in (run.error or "")
    # A failed period may be tried again, and then it posts.
    fake_slack._failures.clear()
    assert (await env.service.run("weekly-architecture")).status == "posted"


async def test_offline_the_activity_and_todos_still_post(
    tmp_path: Path, github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    core = build_core(settings_for(tmp_path, github, fake_slack), secrets_for(None))
    service = checkin_service(core)
    try:
        add_open_todo(core)
        assert (await service.run("weekly-architecture")).status == "posted"
    finally:
        await service.aclose()
        await core.aclose()
    [message] = top_level(fake_slack)
    assert (
        "#51 Stream ticks through Kafka" in message.text and "Pick a feature store" in message.text
    )
    assert content.NO_MODEL_LINE in message.text and ends_with_sign_off_once(message.text)


async def test_catch_up_makes_a_recent_miss_up_once_and_records_older_ones(
    env: Env, fake_slack: FakeSlack
) -> None:
    clock = {"now": datetime(2026, 11, 16, 9, 5, tzinfo=UTC)}
    env.service.clock = lambda: clock["now"]
    assert (await env.service.run("weekly-architecture")).status == "posted"  # the first run
    clock["now"] = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # down across two Mondays
    outcomes = await env.service.catch_up()
    assert [(o.status, o.period) for o in outcomes] == [
        ("skipped", "2026-11-23 09:00 Europe/London"),
        ("posted", "2026-11-30 09:00 Europe/London"),
    ]
    assert await env.service.catch_up() == []  # a second start makes nothing up again
    assert len(top_level(fake_slack)) == 2


async def test_a_check_in_that_never_ran_is_not_made_up(env: Env, fake_slack: FakeSlack) -> None:
    assert await env.service.catch_up() == []
    assert top_level(fake_slack) == [] and env.core.store.checkin_runs("weekly-architecture") == []


async def test_discord_check_in_posts_over_rest_and_opens_its_thread(
    tmp_path: Path, github: FakeGitHub, fake_slack: FakeSlack, fake_discord: FakeDiscord
) -> None:
    settings = settings_for(
        tmp_path, github, fake_slack, platform="discord", channel=fake_discord.channel_id
    )
    settings.discord.api_url = fake_discord.url
    core = build_core(settings, secrets_for(None, discord=fake_discord))
    service = checkin_service(core)
    try:
        outcome = await service.run("weekly-architecture")
        assert outcome.status == "posted", outcome
        run = core.store.checkin_runs("weekly-architecture")[0]
    finally:
        await service.aclose()
        await core.aclose()
    [starter] = fake_discord.messages[fake_discord.channel_id]
    assert "Architecture check-in: weekly-architecture" in starter["content"]
    thread = fake_discord.channels[starter["id"]]  # a thread opened on the message, same id
    assert thread["parent_id"] == fake_discord.channel_id and thread["type"] == 11
    assert fake_discord.identifies == []  # REST only: no gateway session
    posts = [c for c in fake_discord.rest("POST") if c.path.endswith("/messages")]
    assert posts and all(c.body["allowed_mentions"]["parse"] == [] for c in posts)
    parts = [starter, *fake_discord.messages.get(starter["id"], [])]
    everything = "\n".join(m["content"] for m in parts)
    assert "Stream ticks through Kafka" in everything
    assert ends_with_sign_off_once(everything) and SIGN_OFF in parts[-1]["content"]
    guild, channel = fake_discord.guild_id, fake_discord.channel_id
    assert outcome.permalink == f"https://discord.com/channels/{guild}/{channel}/{starter['id']}"
    key = f"discord/{guild}/{channel}/{starter['id']}"
    assert run.thread_key == key


async def test_the_scheduler_fires_the_real_job_on_the_loop(
    tmp_path: Path, github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    core = build_core(
        settings_for(tmp_path, github, fake_slack, cron="* * * * *"), secrets_for(None)
    )
    service = checkin_service(core)
    scheduler = build_scheduler(service)
    scheduler.start()
    try:
        job = scheduler.get_job(job_id("weekly-architecture"))
        assert job is not None and job.coalesce and job.misfire_grace_time is None
        assert job.next_run_time.astimezone(UTC) - datetime.now(UTC) <= timedelta(minutes=1)
        # Bring this job's fire a moment ahead instead of waiting for the next minute.
        job.modify(next_run_time=datetime.now(UTC) + timedelta(milliseconds=200))
        await eventually(lambda: top_level(fake_slack), "the scheduled check-in to post")
        runs = await eventually(
            lambda: [
                r for r in core.store.checkin_runs("weekly-architecture") if r.status == "posted"
            ],
            "the run to be recorded",
        )
        assert runs[0].trigger == "schedule"
        assert len(top_level(fake_slack)) == 1
    finally:
        scheduler.shutdown(wait=False)
        await service.aclose()
        await core.aclose()


_deliveries = iter(range(1, 1_000_000))


def command_msg(text: str, user: str = "U1", channel: str = CHANNEL) -> IncomingMessage:
    return IncomingMessage(
        "slack", TEAM_ID, channel, channel, user, text, f"cmd:{next(_deliveries)}"
    )


async def test_checkin_command_lists_this_channels_check_ins(env: Env) -> None:
    reply = await env.core.consultant.handle(command_msg("!checkin"))
    assert reply is not None and reply.kind == "command"
    assert "weekly-architecture: slack channel" in reply.text and "next: " in reply.text
    assert "last: never run" in reply.text
    elsewhere = await env.core.consultant.handle(command_msg("!checkin", channel="C0OTHER01"))
    assert (
        elsewhere is not None and "No check-ins are configured for this channel" in elsewhere.text
    )


async def test_checkin_name_posts_now_for_admins_only(
    tmp_path: Path, github: FakeGitHub, fake_slack: FakeSlack
) -> None:
    settings = settings_for(tmp_path, github, fake_slack)
    settings.access.admins = ["UADMIN"]
    core = build_core(settings, secrets_for(None))
    core.services.checkins = service = checkin_service(core)
    try:
        refused = await core.consultant.handle(
            command_msg("!checkin weekly-architecture", user="U1")
        )
        assert refused is not None and "Only admins" in refused.text
        assert top_level(fake_slack) == []
        posted = await core.consultant.handle(
            command_msg("!checkin weekly-architecture", user="UADMIN")
        )
        assert posted is not None and "weekly-architecture: posted for" in posted.text
        assert len(top_level(fake_slack)) == 1
        again = await core.consultant.handle(
            command_msg("!checkin weekly-architecture", user="UADMIN")
        )
        assert again is not None and "already posted" in again.text
        unknown = await core.consultant.handle(command_msg("!checkin nope", user="UADMIN"))
        assert unknown is not None and "no check-in named `nope`" in unknown.text.lower()
        listed = await core.consultant.handle(command_msg("!checkin"))
        assert (
            listed is not None and "last: posted: https://acme.slack.com/archives/" in listed.text
        )
    finally:
        await service.aclose()
        await core.aclose()
    assert len(top_level(fake_slack)) == 1


async def test_a_review_interrupted_by_a_crash_is_not_posted_by_recovery(
    tmp_path: Path, github: FakeGitHub, fake_slack: FakeSlack, fake_anthropic: FakeAnthropic
) -> None:

    settings = settings_for(tmp_path, github, fake_slack)
    fake_anthropic.latency = 3.0  # the review is still being written when the process dies
    core = build_core(settings, secrets_for(fake_anthropic))
    service = checkin_service(core)
    running = asyncio.create_task(service.run("weekly-architecture"))
    await eventually(lambda: fake_anthropic.message_requests, "the review's model call")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await service.aclose()
    await core.aclose()
    fake_anthropic.latency = 0.0
    restarted = build_core(settings, secrets_for(fake_anthropic))
    try:
        poster = await create_poster(settings, secrets_for(None))
        answered = await restarted.consultant.recover_pending({"slack": poster.outbox})
    finally:
        await restarted.aclose()
    assert answered == 0
    assert fake_slack.calls_of("chat.postMessage") == []
