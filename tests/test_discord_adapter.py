"""The Discord adapter end to end in-process: real discord.py against a fake Discord
(REST + gateway websocket) and a fake Anthropic, wired by `adapters.runner.run_forever`."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

with warnings.catch_warnings():  # discord.py imports audioop, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    import discord

from adapters.discord import adapter as discord_adapter
from adapters.discord import client as discord_client
from adapters.runner import run_forever
from bot.app import build_core
from bot.errors import ArchbotError
from bot.events import IncomingMessage, Reply
from bot.formatting import fences_balanced
from bot.settings import Secrets, Settings
from bot.signoff import SIGN_OFF
from bot.store import Store, utcnow
from tests.conftest import eventually, make_secrets, make_settings
from tests.fakes.fake_anthropic import FakeAnthropic, ServerThread
from tests.fakes.fake_discord import FakeDiscord, user_payload

TOKEN = "test-not-real"
NO_PINGS = {"parse": []}


def all_texts(body: dict[str, Any]) -> str:
    """Every text block of a recorded Messages API request."""
    return "\n".join(
        b.get("text", "")
        for m in body["messages"]
        for b in (m["content"] if isinstance(m["content"], list) else [])
        if isinstance(b, dict)
    )


class _ReadyWatch(logging.Handler):
    """Sees the runner's "archbot ready" line: the adapters have started."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("archbot ready"):
            self.ready = True


async def start_bot(
    settings: Settings, secrets: Secrets
) -> tuple[asyncio.Event, asyncio.Task[int]]:
    """`run_forever` as a task; returns once the runner says it is ready."""
    watch = _ReadyWatch()
    runner_log = logging.getLogger("adapters.runner")
    runner_log.addHandler(watch)
    old_level = runner_log.level
    runner_log.setLevel(logging.INFO)
    stop = asyncio.Event()
    task = asyncio.create_task(run_forever(settings, secrets, stop))
    try:
        await eventually(lambda: watch.ready or task.done(), "archbot ready", within=20)
    finally:
        runner_log.removeHandler(watch)
        runner_log.setLevel(old_level)
    if task.done():
        task.result()  # raises the start-up error
    return stop, task


def discord_settings(tmp_path: Path, fake: FakeDiscord) -> Settings:
    """Settings with Discord enabled and pointed at the fake."""
    return make_settings(tmp_path, discord={"enabled": True, "api_url": fake.url})


def discord_secrets(fake_model: FakeAnthropic | None, token: str = TOKEN) -> Secrets:
    """Model secrets plus a fake DISCORD_TOKEN."""
    return make_secrets(fake_model).model_copy(update={"discord_token": SecretStr(token)})


@pytest.fixture(autouse=True)
def quick_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake sends every GUILD_CREATE right after READY: no need to wait 2 s for more."""
    monkeypatch.setattr(discord_client, "GUILD_READY_TIMEOUT", 0.1)


@pytest.fixture
def fake_discord() -> Iterator[FakeDiscord]:
    """A fake Discord on loopback; `.url` is its REST base (…/api/v10)."""
    fake = FakeDiscord()
    server = ServerThread(fake.app()).start()
    fake.url = f"{server.url}/api/v10"
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        yield fake
    finally:
        server.stop()
        discord.http.Route.BASE = base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


@dataclass
class Running:
    discord: FakeDiscord
    model: FakeAnthropic
    stop: asyncio.Event
    task: asyncio.Task[int]


@pytest.fixture
async def bot(
    tmp_path: Path, fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic
) -> AsyncIterator[Running]:
    """`archbot run` in-process with Discord enabled, connected to the fakes."""
    stop, task = await start_bot(
        discord_settings(tmp_path, fake_discord), discord_secrets(fake_anthropic)
    )
    try:
        yield Running(fake_discord, fake_anthropic, stop, task)
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


def bot_posts(fake: FakeDiscord, channel_id: str) -> list[dict[str, Any]]:
    return fake.sent_messages(channel_id)


async def test_login_uses_the_configured_api_and_its_gateway(bot: Running) -> None:
    fake = bot.discord
    assert fake.rest("GET", "/users/@me")
    assert fake.rest("GET", "/gateway/bot"), "the gateway must be asked of the configured API"
    identify = fake.identifies[0]
    assert identify["intents"] & (1 << 15), "message_content intent requested"
    assert identify["query"]["v"] == "10" and identify["query"]["encoding"] == "json"


async def test_slash_commands_are_synced(bot: Running) -> None:
    fake = bot.discord
    await eventually(
        lambda: fake.rest("PUT", rf"/applications/{fake.app_id}/commands"), "command sync"
    )
    (sync,) = fake.rest("PUT", rf"/applications/{fake.app_id}/commands")
    (group,) = sync.body
    assert group["name"] == "archbot"
    names = {o["name"] for o in group["options"]}
    assert {"todos", "todo", "usage", "repo", "checkin", "help"} <= names
    todo = next(o for o in group["options"] if o["name"] == "todo")
    assert {o["name"] for o in todo["options"]} == {"add", "done"}


async def test_mention_opens_a_thread_and_follow_up_needs_no_mention(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    model.reply_text("Start with a feature store.\n\nDone. What are we tackling next?")
    question = "How should we store tick data for backtests?"
    sent = fake.message(f"<@{fake.bot_id}> {question}", mention_bot=True)
    thread_id = sent["id"]
    await eventually(lambda: bot_posts(fake, thread_id), "the answer in the thread")

    (create,) = fake.rest("POST", rf"/channels/{fake.channel_id}/messages/{thread_id}/threads")
    assert create.body["name"] == question
    assert fake.rest("POST", rf"/channels/{thread_id}/typing"), "typing indicator while working"
    (answer,) = bot_posts(fake, thread_id)
    assert answer["content"].endswith(SIGN_OFF)
    assert answer["content"].count(SIGN_OFF) == 1
    assert answer["allowed_mentions"] == NO_PINGS
    assert not bot_posts(fake, fake.channel_id), "nothing is posted in the channel itself"
    first_request = model.message_requests[0].body
    assert question in all_texts(first_request)
    assert f"<@{fake.bot_id}>" not in all_texts(first_request)

    model.reply_text("Use TimescaleDB partitions.")
    fake.message("And what about order-book snapshots?", channel_id=thread_id)
    await eventually(lambda: len(bot_posts(fake, thread_id)) == 2, "the follow-up answer")
    history = all_texts(model.message_requests[1].body)
    assert question in history and "Start with a feature store." in history
    assert "order-book snapshots" in history
    assert bot_posts(fake, thread_id)[1]["content"].endswith(SIGN_OFF)


async def test_bang_commands_work_after_a_mention(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    fake.message(f"<@{fake.bot_id}> !todo add Choose a feature store", mention_bot=True)
    await eventually(lambda: bot_posts(fake, fake.channel_id), "the command's answer")
    fake.message(f"<@{fake.bot_id}> !todos", mention_bot=True)
    await eventually(lambda: len(bot_posts(fake, fake.channel_id)) == 2, "the todo list")
    listing = bot_posts(fake, fake.channel_id)[1]
    assert "Choose a feature store" in listing["content"] and listing["content"].endswith(SIGN_OFF)
    assert not fake.rest("POST", r"/channels/\d+/messages/\d+/threads"), "answered in place"
    assert not model.message_requests, "commands never call the model"
    # The same list through /archbot in that channel: one thread key for both.
    fake.interaction([{"name": "todos", "type": 1, "options": []}])
    await eventually(
        lambda: fake.rest("POST", r"/interactions/\d+/[^/]+/callback"), "/archbot todos"
    )
    (callback,) = fake.rest("POST", r"/interactions/\d+/[^/]+/callback")
    assert "Choose a feature store" in callback.body["data"]["content"]


async def test_mention_of_the_bots_role_also_opens_a_thread(bot: Running) -> None:
    fake = bot.discord
    sent = fake.message(
        f"<@&{fake.bot_role_id}> Polars or Spark for 50 GB/day?", mention_bot_role=True
    )
    await eventually(lambda: bot_posts(fake, sent["id"]), "the answer in the thread")
    (create,) = fake.rest("POST", rf"/channels/{fake.channel_id}/messages/{sent['id']}/threads")
    assert create.body["name"] == "Polars or Spark for 50 GB/day?"


async def test_channel_message_without_mention_and_bots_are_ignored(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    fake.message("just chatting, no mention")
    other_bot = user_payload("1100000000000000070", "otherbot", bot=True)
    fake.message(f"<@{fake.bot_id}> ping from a bot", mention_bot=True, author=other_bot)
    # A DM after them: once it is answered, the earlier events have been processed.
    dm_channel = fake.new_id()
    fake.message("hello in a DM", channel_id=dm_channel, dm=True)
    await eventually(lambda: bot_posts(fake, dm_channel), "the DM answer")
    assert len(model.message_requests) == 1
    assert "ping from a bot" not in all_texts(model.message_requests[0].body)
    assert not fake.rest("POST", r"/channels/\d+/messages/\d+/threads")
    assert all(
        c.path.startswith(f"/channels/{dm_channel}") for c in fake.rest("POST", r"/channels/.*")
    )


async def test_dm_is_answered_in_the_dm(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    model.reply_text("Batch first, stream later.")
    dm_channel = fake.new_id()
    fake.message("Should we start with streaming?", channel_id=dm_channel, dm=True)
    await eventually(lambda: bot_posts(fake, dm_channel), "the DM answer")
    (answer,) = bot_posts(fake, dm_channel)
    assert answer["content"].startswith("Batch first") and answer["content"].endswith(SIGN_OFF)
    assert answer["allowed_mentions"] == NO_PINGS


async def test_long_answer_with_code_is_split_with_closed_fences(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    code = "\n".join(f"    step_{i} = run_stage({i}, retries=3)  # idempotent" for i in range(70))
    prose = " ".join(["Keep the stages idempotent and observable."] * 30)
    long_answer = f"{prose}\n\n```python\n{code}\n```\n\n{prose}\n\n@everyone <@&123> look at this"
    assert len(long_answer) > 5000
    model.reply_text(long_answer)
    sent = fake.message(f"<@{fake.bot_id}> plan the pipeline", mention_bot=True)
    thread_id = sent["id"]

    def complete() -> bool:
        posts = bot_posts(fake, thread_id)
        return bool(posts) and posts[-1]["content"].endswith(SIGN_OFF)

    await eventually(complete, "every part of the long answer")
    parts = [p["content"] for p in bot_posts(fake, thread_id)]
    assert len(parts) >= 3
    assert all(len(p) <= 2000 for p in parts)
    assert all(fences_balanced(p) for p in parts)
    assert sum(p.count(SIGN_OFF) for p in parts) == 1 and parts[-1].endswith(SIGN_OFF)
    assert sum(p.count("```python") for p in parts) >= 2, "the fence is reopened with its language"
    assert all(p["allowed_mentions"] == NO_PINGS for p in bot_posts(fake, thread_id))
    joined = "".join(parts)
    assert all(f"step_{i} = run_stage({i}" in joined for i in range(70))


async def test_rate_limited_send_is_retried(bot: Running) -> None:
    fake, model = bot.discord, bot.model
    dm_channel = fake.new_id()
    fake.rate_limit("POST", rf"/channels/{dm_channel}/messages")
    model.reply_text("Measure first.")
    fake.message("Is Kafka overkill for us?", channel_id=dm_channel, dm=True)
    await eventually(lambda: bot_posts(fake, dm_channel), "the answer after a 429")
    statuses = [c.status for c in fake.rest("POST", rf"/channels/{dm_channel}/messages")]
    assert statuses == [429, 200]


async def test_mentioned_in_a_foreign_thread_reads_its_history_once(
    fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    fake = fake_discord
    bob = user_payload("1100000000000000051", "bob")
    starter = fake.seed_message(fake.channel_id, "Can we hit a 50 ms latency budget?", bob)
    thread = fake.add_thread(fake.channel_id, "latency budget", bob["id"], thread_id=starter["id"])
    fake.seed_message(thread["id"], "Our p99 inference latency is 80 ms, budget is 50 ms.", bob)
    fake.seed_message(thread["id"], "We serve with FastAPI + PyTorch on CPU.", bob)
    stop, task = await start_bot(discord_settings(tmp_path, fake), discord_secrets(fake_anthropic))
    try:
        fake.message("unrelated chatter in the thread", channel_id=thread["id"])
        fake.message(
            f"<@{fake.bot_id}> what would you change?", channel_id=thread["id"], mention_bot=True
        )
        await eventually(lambda: bot_posts(fake, thread["id"]), "the answer in the foreign thread")
        history = all_texts(fake_anthropic.message_requests[0].body)
        in_order = [
            "50 ms latency budget?",
            "p99 inference latency",
            "FastAPI + PyTorch",
            "chatter",
        ]
        positions = [history.find(text) for text in in_order]
        assert -1 not in positions and positions == sorted(positions), history
        assert "what would you change?" in history
        assert not fake.rest("POST", r"/channels/\d+/messages/\d+/threads"), "no new thread"
        reads = len(fake.rest("GET", rf"/channels/{thread['id']}/messages"))
        fake.message("and with ONNX Runtime?", channel_id=thread["id"])
        await eventually(lambda: len(bot_posts(fake, thread["id"])) == 2, "the follow-up")
        assert len(fake.rest("GET", rf"/channels/{thread['id']}/messages")) == reads, "read once"
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_slash_command_runs_the_core_command(bot: Running) -> None:
    fake = bot.discord
    fake.interaction(
        [
            {
                "name": "todo",
                "type": 2,
                "options": [
                    {
                        "name": "add",
                        "type": 1,
                        "options": [{"name": "text", "type": 3, "value": "Pick a TSDB"}],
                    }
                ],
            }
        ]
    )
    await eventually(
        lambda: fake.rest("POST", r"/interactions/\d+/[^/]+/callback"), "the interaction answer"
    )
    fake.interaction([{"name": "todos", "type": 1, "options": []}])
    await eventually(
        lambda: len(fake.rest("POST", r"/interactions/\d+/[^/]+/callback")) == 2,
        "the second answer",
    )
    first, second = fake.rest("POST", r"/interactions/\d+/[^/]+/callback")
    assert "Pick a TSDB" in second.body["data"]["content"]
    for call in (first, second):
        assert call.body["data"]["allowed_mentions"] == NO_PINGS
        assert call.body["data"]["content"].endswith(SIGN_OFF)
    assert not bot.model.message_requests, "commands never call the model"


async def test_missing_message_content_intent_is_one_readable_line(
    fake_anthropic: FakeAnthropic, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake_discord.message_content_intent = False
    settings, secrets = discord_settings(tmp_path, fake_discord), discord_secrets(fake_anthropic)
    with pytest.raises(ArchbotError) as caught:
        await run_forever(settings, secrets, asyncio.Event())
    message = str(caught.value)
    assert (
        "4014" in message and "Message Content Intent" in message and "Developer Portal" in message
    )
    assert "\n" not in message and TOKEN not in message


async def test_run_exits_non_zero_when_discord_drops_the_bot_for_good(
    fake_anthropic: FakeAnthropic,
    fake_discord: FakeDiscord,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.runner")
    settings, secrets = discord_settings(tmp_path, fake_discord), discord_secrets(fake_anthropic)
    stop = asyncio.Event()
    running = asyncio.create_task(run_forever(settings, secrets, stop))
    try:
        await eventually(lambda: "archbot ready" in caplog.text, "the bot to be ready")
        fake_discord.close_sessions(4004, b"Authentication failed.")  # a revoked token
        assert await asyncio.wait_for(running, 20) == 1
    finally:
        stop.set()
        if not running.done():
            await asyncio.wait_for(running, 20)


async def test_doctor_logs_in_and_names_the_bot(fake_discord: FakeDiscord, tmp_path: Path) -> None:
    settings = discord_settings(tmp_path, fake_discord)
    status = await discord_adapter.doctor_check(settings, discord_secrets(None))
    assert status is not None and "archbot" in status and fake_discord.bot_id in status
    with pytest.raises(ArchbotError, match="rejected DISCORD_TOKEN"):
        await discord_adapter.doctor_check(settings, discord_secrets(None, "nope"))


@pytest.fixture
async def adapter(
    tmp_path: Path, fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic
) -> AsyncIterator[discord_adapter.DiscordAdapter]:
    """The adapter itself, started (for its outbox), on a production-wired core."""
    core = build_core(discord_settings(tmp_path, fake_discord), discord_secrets(fake_anthropic))
    started = discord_adapter.create_adapter(core)
    try:
        await started.start()
        yield started
    finally:
        await started.stop()
        await core.aclose()


async def test_outbox_posts_top_level_then_into_a_thread_on_it(
    adapter: discord_adapter.DiscordAdapter, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    header = "Weekly architecture check-in\n\nDone. What are we tackling next?"
    first = await adapter.outbox.post(fake.channel_id, None, header)
    (top,) = fake.sent_messages(fake.channel_id)
    assert top["content"] == header
    await adapter.outbox.post(fake.channel_id, first, "Repo activity: 3 merged PRs.")
    (create,) = fake.rest("POST", rf"/channels/{fake.channel_id}/messages/{first}/threads")
    assert create.body["name"] == "Weekly architecture check-in"
    assert fake.sent_messages(first)[0]["content"] == "Repo activity: 3 merged PRs."
    assert await adapter.check() == f"logged in as archbot (id {fake.bot_id})"


async def test_outbox_unarchives_an_archived_thread(
    fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    fake = fake_discord
    thread = fake.add_thread(fake.channel_id, "old design", fake.bot_id, archived=True)
    core = build_core(discord_settings(tmp_path, fake), discord_secrets(fake_anthropic))
    started = discord_adapter.create_adapter(core)
    try:
        await started.start()
        await started.outbox.post(fake.channel_id, thread["id"], "Back on this.")
    finally:
        await started.stop()
        await core.aclose()
    (edit,) = fake.rest("PATCH", rf"/channels/{thread['id']}")
    assert edit.body["archived"] is False
    assert fake.sent_messages(thread["id"])[0]["content"] == "Back on this."


async def test_outbox_answers_in_the_parent_when_it_cannot_unarchive(
    fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    fake = fake_discord
    thread = fake.add_thread(fake.channel_id, "locked design", "1100000000000000051", archived=True)
    fake.fail("PATCH", rf"/channels/{thread['id']}", 403, code=50001)
    core = build_core(discord_settings(tmp_path, fake), discord_secrets(fake_anthropic))
    started = discord_adapter.create_adapter(core)
    try:
        await started.start()
        await started.outbox.post(fake.channel_id, thread["id"], "Here is the answer.")
    finally:
        await started.stop()
        await core.aclose()
    assert not fake.sent_messages(thread["id"])
    (posted,) = fake.sent_messages(fake.channel_id)
    assert f"https://discord.com/channels/{fake.guild_id}/{thread['id']}" in posted["content"]
    assert posted["content"].endswith("Here is the answer.")
    assert posted["allowed_mentions"] == NO_PINGS


async def test_failed_send_is_logged_with_the_thread_key_and_the_answer_kept(
    bot: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake, model = bot.discord, bot.model
    dm = fake.new_id()
    fake.fail("POST", rf"/channels/{dm}/messages", 403, code=50007)
    model.reply_text("An answer that cannot be delivered.")
    with caplog.at_level(logging.ERROR, logger="adapters.discord.client"):
        fake.message("are you there?", channel_id=dm, dm=True)
        await eventually(
            lambda: any("stays stored" in r.getMessage() for r in caplog.records), "the failure log"
        )
    (record,) = [r for r in caplog.records if "stays stored" in r.getMessage()]
    assert f"discord/dm/{dm}/{dm}" in record.getMessage()
    store = Store.open(str(tmp_path / "archbot.db"))
    try:
        (turn,) = store.unposted_turns("", utcnow())
        assert turn.reply is not None and turn.reply.startswith(
            "An answer that cannot be delivered."
        )
    finally:
        store.close()


async def test_slow_slash_command_is_deferred_then_followed_up(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_discord
    consultant = adapter.core.consultant
    handle = consultant.handle
    release = asyncio.Event()

    async def slow_handle(msg: IncomingMessage) -> Reply | None:
        await release.wait()  # the core is busy until the test has seen the deferral
        return await handle(msg)

    monkeypatch.setattr(consultant, "handle", slow_handle)
    monkeypatch.setattr(discord_client, "DEFER_AFTER", 0.05)
    fake.interaction([{"name": "help", "type": 1, "options": []}])
    callbacks = r"/interactions/\d+/[^/]+/callback"
    await eventually(lambda: fake.rest("POST", callbacks), "the deferral")
    (callback,) = fake.rest("POST", callbacks)
    assert callback.body["type"] == 5, "a deferred (thinking) response"
    release.set()
    await eventually(lambda: fake.rest("POST", r"/webhooks/\d+/[^/]+"), "the follow-up")
    followups = fake.rest("POST", r"/webhooks/\d+/[^/]+")
    assert "/archbot" in followups[0].body["content"]
    assert followups[-1].body["content"].endswith(SIGN_OFF)
    assert all(f.body["allowed_mentions"] == NO_PINGS for f in followups)


async def test_thread_follow_up_after_a_restart_uses_stored_history(
    fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    """After a restart the thread is not in discord.py's cache: it is looked up, not ignored."""
    fake, model = fake_discord, fake_anthropic
    settings, secrets = discord_settings(tmp_path, fake), discord_secrets(model)
    model.reply_text("Use an event log.")
    stop, task = await start_bot(settings, secrets)
    try:
        thread = fake.message(f"<@{fake.bot_id}> How do we reconcile fills?", mention_bot=True)[
            "id"
        ]
        await eventually(lambda: bot_posts(fake, thread), "the first answer")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0
    stop, task = await start_bot(settings, secrets)
    try:
        model.reply_text("Reconcile nightly against the broker.")
        fake.message("And how often?", channel_id=thread)
        await eventually(lambda: len(bot_posts(fake, thread)) == 2, "the answer after the restart")
        assert fake.rest("GET", rf"/channels/{thread}"), "the unknown thread was looked up"
        history = all_texts(model.message_requests[1].body)
        assert "How do we reconcile fills?" in history and "Use an event log." in history
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_follow_ups_typed_at_once_are_answered_in_order(
    bot: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """The bot joins the thread when it accepts the mention, before the thread exists."""
    caplog.set_level(logging.DEBUG, logger="bot.arrivals")
    fake, model = bot.discord, bot.model
    for answer in ("Answer one.", "Answer two.", "Answer three."):
        model.reply_text(answer)
    thread = fake.new_id()  # the mention's id, and so the id of the thread opened on it
    release = fake.hold("POST", rf"/channels/{thread}/typing")
    try:
        fake.message(
            f"<@{fake.bot_id}> Kafka or Redpanda?", mention_bot=True, fields={"id": thread}
        )
        # The thread is there and the first turn has not reached the core: type two more.
        await eventually(lambda: fake.rest("POST", rf"/channels/{thread}/typing"), "the thread")
        fake.message("We run on k8s.", channel_id=thread)
        fake.message("About 40k msgs/s at peak.", channel_id=thread)
        await eventually(
            lambda: caplog.text.count("waits for the one before it") == 2, "both follow-ups taken"
        )
        assert not model.message_requests
    finally:
        release.set()
    await eventually(lambda: len(bot_posts(fake, thread)) == 3, "three answers")
    posts = [p["content"] for p in bot_posts(fake, thread)]
    assert [p.split("\n")[0] for p in posts] == ["Answer one.", "Answer two.", "Answer three."]
    first, second, third = (all_texts(r.body) for r in model.message_requests)
    assert "Kafka or Redpanda?" in first and "k8s" not in first
    assert "Answer one." in second and "We run on k8s." in second and "40k" not in second
    assert "Answer two." in third and "About 40k msgs/s at peak." in third


async def test_a_follow_up_is_stored_while_the_turn_before_it_still_runs(
    bot: Running, tmp_path: Path
) -> None:
    """The adapter's line only covers the awaits before the core stores a message.

    A follow-up held until the previous answer was posted would be lost by a crash
    meanwhile (Discord does not redeliver); stored, it is answered after a restart.
    """
    fake, model = bot.discord, bot.model
    model.latency = 1.0
    model.reply_text("Answer one.")
    model.reply_text("Answer two.")
    thread = fake.new_id()
    fake.message(f"<@{fake.bot_id}> Kafka or Redpanda?", mention_bot=True, fields={"id": thread})
    await eventually(lambda: len(model.requests) == 1, "the first model call")
    fake.message("We run on k8s.", channel_id=thread)
    store = Store.open(tmp_path / "archbot.db")
    try:

        def stored_questions() -> list[str]:
            rows = store.conn.execute("SELECT text FROM turns ORDER BY id").fetchall()
            return [r[0] for r in rows]

        await eventually(lambda: len(stored_questions()) == 2, "the follow-up stored")
        assert not bot_posts(fake, thread), "stored while the first answer was still coming"
    finally:
        store.close()
    await eventually(lambda: len(bot_posts(fake, thread)) == 2, "both answers")


async def test_follow_up_waits_while_a_foreign_threads_history_is_read(
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mentioned in a thread it has not seen: the next message is answered after the mention."""
    caplog.set_level(logging.DEBUG, logger="bot.arrivals")
    fake, model = fake_discord, fake_anthropic
    bob = user_payload("1100000000000000051", "bob")
    thread = fake.add_thread(fake.channel_id, "latency", bob["id"])["id"]
    fake.seed_message(thread, "Our p99 is 80 ms.", bob)
    model.reply_text("First: where does the time go?")
    model.reply_text("Then batch the requests.")
    stop, task = await start_bot(discord_settings(tmp_path, fake), discord_secrets(model))
    release = fake.hold("GET", rf"/channels/{thread}/messages")
    try:
        fake.message(
            f"<@{fake.bot_id}> what would you change?", channel_id=thread, mention_bot=True
        )
        await eventually(lambda: fake.rest("GET", rf"/channels/{thread}/messages"), "the read")
        fake.message("We serve on CPU.", channel_id=thread)
        await eventually(lambda: "waits for the one before it" in caplog.text, "the follow-up")
        release.set()
        await eventually(lambda: len(bot_posts(fake, thread)) == 2, "both answers")
        posts = [p["content"] for p in bot_posts(fake, thread)]
        assert posts[0].startswith("First:") and posts[1].startswith("Then batch")
        first, second = (all_texts(r.body) for r in model.message_requests)
        assert "Our p99 is 80 ms." in first and "what would you change?" in first
        assert "We serve on CPU." not in first
        assert "First: where does the time go?" in second and "We serve on CPU." in second
    finally:
        release.set()
        stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def test_nothing_to_read_never_reaches_the_core_but_a_bare_mention_does(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = fake_discord
    consultant = adapter.core.consultant
    handle = consultant.handle
    seen: list[IncomingMessage] = []

    async def recording_handle(msg: IncomingMessage, **kwargs: Any) -> Reply | None:
        seen.append(msg)
        return await handle(msg, **kwargs)

    monkeypatch.setattr(consultant, "handle", recording_handle)
    dm = fake.new_id()
    sticker = {"sticker_items": [{"id": "749054660769218631", "name": "Wave", "format_type": 3}]}
    fake.message("", channel_id=dm, dm=True, fields=sticker)
    empty_forward = {
        "message_reference": {"type": 1, "channel_id": "1100000000000000012", "message_id": "7"},
        "message_snapshots": [
            {
                "message": {
                    "type": 0,
                    "content": "",
                    "embeds": [],
                    "attachments": [],
                    "timestamp": "2026-11-30T08:00:00.000000+00:00",
                    "edited_timestamp": None,
                    "flags": 0,
                }
            }
        ],
    }
    fake.message("", channel_id=dm, dm=True, fields=empty_forward)
    bare = fake.message(f"<@{fake.bot_id}>", mention_bot=True)
    fake.message("and now a question", channel_id=dm, dm=True)
    await eventually(lambda: len(seen) == 2, "the bare mention and the question")
    mention, question = sorted(seen, key=lambda m: m.text)  # two threads: either may come first
    assert mention.text == "" and mention.mentioned and not mention.has_content
    assert mention.thread == bare["id"], "a bare mention opens its thread like any other"
    assert question.text == "and now a question" and not question.mentioned


async def test_a_failed_message_does_not_hold_up_the_next_one_in_its_thread(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.arrivals")
    fake, model = fake_discord, fake_anthropic
    consultant = adapter.core.consultant
    handle = consultant.handle
    release = asyncio.Event()

    async def first_one_breaks(msg: IncomingMessage, **kwargs: Any) -> Reply | None:
        if msg.text == "first":
            await release.wait()  # the second message is queued behind this one by now
            raise RuntimeError("boom")
        return await handle(msg, **kwargs)

    monkeypatch.setattr(consultant, "handle", first_one_breaks)
    model.reply_text("Second answered.")
    dm = fake.new_id()
    fake.message("first", channel_id=dm, dm=True)
    fake.message("second", channel_id=dm, dm=True)
    await eventually(lambda: "waits for the one before it" in caplog.text, "the second queued")
    release.set()
    await eventually(lambda: bot_posts(fake, dm), "the second answer")
    (answer,) = bot_posts(fake, dm)
    assert answer["content"].startswith("Second answered.")


async def test_an_answer_ready_before_the_one_ahead_of_it_is_posted_after_it(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The core runs a thread's next turn once an answer is stored: posting keeps the order."""
    fake, model = fake_discord, fake_anthropic
    consultant = adapter.core.consultant
    handle = consultant.handle
    third_answered = asyncio.Event()

    async def second_comes_back_late(msg: IncomingMessage, **kwargs: Any) -> Reply | None:
        reply = await handle(msg, **kwargs)
        if msg.text == "third":
            third_answered.set()
        elif msg.text == "second":
            # Answered and stored, but slow to come back: the third answer is ready first.
            await asyncio.wait_for(third_answered.wait(), 10)
        return reply

    monkeypatch.setattr(consultant, "handle", second_comes_back_late)
    for answer in ("Answer one.", "Answer two.", "Answer three."):
        model.reply_text(answer)
    dm = fake.new_id()
    for text in ("first", "second", "third"):
        fake.message(text, channel_id=dm, dm=True)
    await eventually(lambda: len(bot_posts(fake, dm)) == 3, "three answers")
    posts = [p["content"].split("\n")[0] for p in bot_posts(fake, dm)]
    assert posts == ["Answer one.", "Answer two.", "Answer three."]


async def test_start_returns_once_readys_guilds_arrived_not_after_discordpys_timer(
    tmp_path: Path,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # discord.py calls the bot ready only `guild_ready_timeout` after the last
    # GUILD_CREATE; READY already said which guilds come, so start-up need not wait.
    monkeypatch.setattr(discord_client, "GUILD_READY_TIMEOUT", 8)
    core = build_core(discord_settings(tmp_path, fake_discord), discord_secrets(fake_anthropic))
    adapter = discord_adapter.create_adapter(core)
    try:
        await asyncio.wait_for(adapter.start(), 20)
        client = adapter.client
        assert client.guilds and not any(g.unavailable for g in client.guilds)
        assert not client.is_ready(), "discord.py's own ready is still waiting on its timer"
    finally:
        # stop() lets discord.py's ready fire first: closed before it, its dispatch is lost.
        await adapter.stop()
        await core.aclose()
