"""Stop, progress and feedback in Discord, in-process: the real discord.py client against the
fake Discord (REST + gateway, clicks as INTERACTION_CREATE) and a slow scripted model."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.discord import adapter as discord_adapter
from adapters.discord import working as discord_working
from adapters.discord.buttons import STOP_ID
from adapters.discord.client import NOT_A_VOTE, NOT_ALLOWED, NOTHING_RUNNING, UNKNOWN_ANSWER
from bot.app import build_core
from bot.feedback import votes_for
from bot.signoff import SIGN_OFF
from tests.conftest import eventually
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_discord import FakeDiscord, user_payload
from tests.test_discord_adapter import (
    adapter,
    bot_posts,
    discord_secrets,
    discord_settings,
    fake_discord,
    quick_ready,
)
from tests.test_turns_stop import slow_tools

__all__ = ["adapter", "fake_discord", "quick_ready"]  # fixtures used here

NO_PINGS = {"parse": []}
BOB = user_payload("1100000000000000051", "bob")


def custom_ids(message: dict[str, Any]) -> list[str]:
    """The custom_ids of a message's buttons, in order."""
    return [b["custom_id"] for row in message.get("components") or [] for b in row["components"]]


def working_messages(fake: FakeDiscord, channel: str) -> list[dict[str, Any]]:
    """The bot's messages in a channel that carry a Stop button right now."""
    return [m for m in list(fake.messages.get(channel, [])) if STOP_ID in custom_ids(m)]


def answered(fake: FakeDiscord, interaction: dict[str, Any]) -> bool:
    return fake.answer_to(interaction).callback_type is not None


def stopped_posts(fake: FakeDiscord, channel: str) -> list[dict[str, Any]]:
    return [m for m in bot_posts(fake, channel) if m["content"].startswith("Stopped.")]


async def test_the_stop_button_stops_a_slow_answer_and_the_thread_goes_on(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake, model = fake_discord, fake_anthropic
    model.latency = 6.0  # the answer would take six seconds
    thread = fake.message(f"<@{fake.bot_id}> Design the tick store", mention_bot=True)["id"]
    [working] = await eventually(lambda: working_messages(fake, thread), "the working message")
    assert working["content"] == "Working on it…"
    [posted] = [c.body for c in fake.rest("POST", rf"/channels/{thread}/messages")]
    assert posted["allowed_mentions"] == NO_PINGS

    click = fake.click(working["id"], STOP_ID, user=BOB)
    clicked = time.monotonic()
    await eventually(lambda: stopped_posts(fake, thread), "Stopped.", within=3)
    assert time.monotonic() - clicked < 1.5
    # Answered at once by taking the button off the message (no second click possible).
    answer = fake.answer_to(click)
    assert answer.callback_type == 7 and not answer.ephemeral
    [stopped] = stopped_posts(fake, thread)
    assert stopped["content"].endswith(SIGN_OFF)
    assert "components" not in stopped or stopped["components"] == [], "no 👍/👎 on Stopped."
    # Without tool calls the working message is gone; nothing of the slow answer was posted.
    await eventually(lambda: working["id"] in fake.deleted, "the working message deleted")
    assert [m["content"] for m in bot_posts(fake, thread)] == [stopped["content"]]

    model.latency = 0.0
    model.reply_text("Partition by day.")
    fake.message("And the partitioning?", channel_id=thread)
    await eventually(lambda: len(bot_posts(fake, thread)) == 2, "the next answer")
    follow_up = bot_posts(fake, thread)[1]
    assert follow_up["content"].startswith("Partition by day.")


async def test_a_stop_during_a_tool_call_cancels_it_and_keeps_its_line(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake, model = fake_discord, fake_anthropic
    started = asyncio.Event()
    adapter.core.consultant.tools = slow_tools(started)
    model.reply_tool_use("read_file", {"path": "pipelines/resample.py", "repo": "acme/trading"})
    model.reply_text("Never posted: the tool call is stopped first.")
    thread = fake.message(f"<@{fake.bot_id}> Review resampling", mention_bot=True)["id"]

    def shows_the_tool_call() -> list[dict[str, Any]]:
        return [m for m in working_messages(fake, thread) if "… Reading" in m["content"]]

    # The first tool call shows the working message at once (no waiting for SHOW_AFTER).
    [working] = await eventually(shows_the_tool_call, "the progress line", within=5)
    assert started.is_set()
    lines = working["content"].splitlines()
    assert lines[0] == "Working on it…"
    assert lines[1].startswith("… Reading `pipelines/resample.py` in acme/trading · [")
    assert "(<https://github.com/acme/trading/blob/HEAD/pipelines/resample.py>)" in lines[1]

    click = fake.click(working["id"], STOP_ID)
    await eventually(lambda: stopped_posts(fake, thread), "Stopped.", within=3)
    assert fake.answer_to(click).callback_type == 7
    assert len(model.message_requests) == 1, "no model round after the stop"

    def finished() -> dict[str, Any] | None:
        found = fake.find_message(working["id"])
        return found if found and found["content"].startswith("-# ✗") else None

    final = await eventually(finished, "the working message finalised")
    assert final["components"] == [], "the Stop button is gone"
    assert "Reading `pipelines/resample.py` in acme/trading" in final["content"]
    # Posted: the working message (edited since) and "Stopped.", nothing of an answer.
    assert [m["content"].splitlines()[0] for m in bot_posts(fake, thread)] == [
        "Working on it…",
        "Stopped.",
    ]


async def test_bang_stop_in_the_thread_stops_the_turn_and_gets_no_reply_of_its_own(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, model = fake_discord, fake_anthropic
    monkeypatch.setattr(discord_working, "SHOW_AFTER", 0.2)
    model.latency = 6.0
    thread = fake.message(f"<@{fake.bot_id}> Size the Kafka cluster", mention_bot=True)["id"]
    [working] = await eventually(lambda: working_messages(fake, thread), "the working message")
    sent = time.monotonic()
    fake.message("!stop", channel_id=thread)
    await eventually(lambda: stopped_posts(fake, thread), "Stopped.", within=3)
    assert time.monotonic() - sent < 1.5
    await eventually(lambda: working["id"] in fake.deleted, "the working message deleted")
    model.latency = 0.0
    fake.message("!stop", channel_id=thread)  # nothing runs now: the command says so
    await eventually(lambda: len(bot_posts(fake, thread)) == 2, "the idle !stop's reply")
    posts = [m["content"] for m in bot_posts(fake, thread)]
    assert posts[0].startswith("Stopped.")
    assert posts[1].startswith("Nothing is being written in this thread right now.")
    assert not working_messages(fake, thread), "commands get no working message"


async def test_a_stale_stop_button_says_nothing_runs_instead_of_failing(
    adapter: discord_adapter.DiscordAdapter, fake_discord: FakeDiscord
) -> None:
    """A working message left by a process that died: its turn died with it."""
    fake = fake_discord
    stale = fake.seed_message(fake.channel_id, "Working on it…", fake.bot_user)
    stale["components"] = [
        {"type": 1, "components": [{"type": 2, "style": 4, "label": "Stop", "custom_id": STOP_ID}]}
    ]
    click = fake.click(stale["id"], STOP_ID)
    await eventually(lambda: answered(fake, click), "the click answered")
    answer = fake.answer_to(click)
    assert (answer.callback_type, answer.ephemeral, answer.content) == (4, True, NOTHING_RUNNING)


async def test_votes_are_stored_per_person_the_latest_counts_and_quality_counts_them(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake, model = fake_discord, fake_anthropic
    prose = " ".join(["Keep the feature store's online path under 5 ms."] * 60)
    model.reply_text(f"{prose}\n\n{prose}")  # about 6,000 chars: three parts
    thread = fake.message(f"<@{fake.bot_id}> Online features?", mention_bot=True)["id"]

    def complete() -> bool:
        posts = bot_posts(fake, thread)
        return bool(posts) and posts[-1]["content"].endswith(SIGN_OFF)

    await eventually(complete, "the answer")
    parts = list(fake.messages[thread])
    assert len(parts) >= 3
    turn_id = int(custom_ids(parts[-1])[0].rsplit(":", 1)[1])
    assert custom_ids(parts[-1]) == [f"archbot:vote:up:{turn_id}", f"archbot:vote:down:{turn_id}"]
    assert all(custom_ids(p) == [] for p in parts[:-1]), "only the last part has the buttons"
    emoji = [b["emoji"]["name"] for row in parts[-1]["components"] for b in row["components"]]
    assert emoji == ["👍", "👎"]

    last = parts[-1]["id"]
    clicks = [
        fake.click(last, f"archbot:vote:down:{turn_id}"),  # alice first says 👎 ...
        fake.click(last, f"archbot:vote:up:{turn_id}"),  # ... then changes her mind
        fake.click(last, f"archbot:vote:down:{turn_id}", user=BOB),
    ]
    await eventually(lambda: all(answered(fake, c) for c in clicks), "the clicks answered")
    answers = [fake.answer_to(c) for c in clicks]
    assert [(a.callback_type, a.ephemeral) for a in answers] == [(4, True)] * 3
    assert [a.content for a in answers] == [
        "Thanks: noted 👎",
        "Thanks: noted 👍",
        "Thanks: noted 👎",
    ]
    votes = {(v.user, v.vote) for v in votes_for(adapter.core.store, turn_id)}
    assert votes == {("1100000000000000050", "up"), ("1100000000000000051", "down")}

    fake.message("!quality", channel_id=thread)
    await eventually(lambda: "👍" in bot_posts(fake, thread)[-1]["content"], "the report")
    report = bot_posts(fake, thread)[-1]
    [row] = [line for line in report["content"].splitlines() if "(here)" in line]
    assert "👍 1" in row and "👎 1" in row and "50%" in row
    assert custom_ids(fake.messages[thread][-1]) == [], "a command's reply has no buttons"


async def test_hostile_clicks_are_answered_and_store_nothing(
    adapter: discord_adapter.DiscordAdapter, fake_discord: FakeDiscord
) -> None:
    fake = fake_discord
    odd = fake.seed_message(fake.channel_id, "An old answer.", fake.bot_user)
    odd["components"] = [
        {
            "type": 1,
            "components": [
                {"type": 2, "style": 2, "emoji": {"name": "👍"}, "custom_id": cid}
                for cid in (
                    "archbot:vote:sideways:1",
                    "archbot:vote:up:999999",
                    "archbot:vote:up:1; DROP TABLE feedback",
                )
            ],
        }
    ]
    robot = user_payload("1100000000000000070", "otherbot", bot=True)
    clicks = [
        (fake.click(odd["id"], "archbot:vote:sideways:1"), NOT_A_VOTE),
        (fake.click(odd["id"], "archbot:vote:up:999999"), UNKNOWN_ANSWER),
        (fake.click(odd["id"], "archbot:vote:up:1; DROP TABLE feedback"), NOT_A_VOTE),
        (fake.click(odd["id"], "archbot:vote:up:999999", user=robot), NOT_ALLOWED),
    ]
    await eventually(lambda: all(answered(fake, c) for c, _ in clicks), "every click answered")
    for click, expected in clicks:
        answer = fake.answer_to(click)
        assert (answer.callback_type, answer.ephemeral, answer.content) == (4, True, expected)
    count = adapter.core.store.conn.execute("SELECT count(*) FROM feedback").fetchone()[0]
    assert count == 0


async def test_a_vote_button_still_works_after_a_restart(
    fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    fake, model = fake_discord, fake_anthropic
    settings, secrets = discord_settings(tmp_path, fake), discord_secrets(model)
    model.reply_text("Use an event log.")
    core = build_core(settings, secrets)
    first = discord_adapter.create_adapter(core)
    try:
        await first.start()
        thread = fake.message(f"<@{fake.bot_id}> How do we reconcile fills?", mention_bot=True)
        await eventually(lambda: bot_posts(fake, thread["id"]), "the answer")
    finally:
        await first.stop()
        await core.aclose()
    [answer] = fake.messages[thread["id"]]
    up = custom_ids(answer)[0]
    core = build_core(settings, secrets)
    second = discord_adapter.create_adapter(core)
    try:
        await second.start()
        click = fake.click(answer["id"], up)
        await eventually(lambda: answered(fake, click), "the click after the restart")
        assert fake.answer_to(click).content == "Thanks: noted 👍"
        turn_id = int(up.rsplit(":", 1)[1])
        assert [v.vote for v in votes_for(core.store, turn_id)] == ["up"]
    finally:
        await second.stop()
        await core.aclose()


async def test_progress_edits_are_coalesced_within_discords_edit_rate(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
) -> None:
    """Ten progress events in about two seconds: a few edits, never two within EDIT_EVERY."""
    fake, model = fake_discord, fake_anthropic
    model.latency = 0.4
    for _ in range(5):
        model.reply_tool_use("list_todos", {})
    model.reply_text("No todos yet: shall I add the first?")
    thread = fake.message(f"<@{fake.bot_id}> What is left to do?", mention_bot=True)["id"]
    await eventually(
        lambda: any("No todos yet" in m["content"] for m in bot_posts(fake, thread)), "the answer"
    )
    [working] = [c for c in fake.rest("POST", rf"/channels/{thread}/messages") if c.created][:1]
    edits = fake.rest("PATCH", rf"/channels/{thread}/messages/{working.created}")
    final = edits[-1]
    assert final.body["components"] == [], "the last edit takes the Stop button off"
    assert final.body["content"].count("-# ✓ Reading the todo list") == 5
    live = [working, *edits[:-1]]  # the post and the edits while the turn ran
    gaps = [b.at - a.at for a, b in itertools.pairwise(live)]
    assert all(gap >= discord_working.EDIT_EVERY * 0.9 for gap in gaps), gaps
    assert len(edits) <= 1 + (final.at - working.at) / discord_working.EDIT_EVERY + 1
    assert all(e.body["allowed_mentions"] == NO_PINGS for e in edits)


async def test_an_error_reply_carries_no_buttons(
    adapter: discord_adapter.DiscordAdapter,
    fake_discord: FakeDiscord,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake, model = fake_discord, fake_anthropic
    for _ in range(3):  # the SDK retries an overload twice
        model.reply_error(529)
    dm = fake.new_id()
    fake.message("Is the model up?", channel_id=dm, dm=True)
    [reply] = await eventually(lambda: bot_posts(fake, dm), "the error reply", within=20)
    assert reply["content"].startswith("I couldn't get an answer from the model")
    assert custom_ids(fake.messages[dm][-1]) == []
