"""Acceptance, as a new user tries it: `archbot run` (a real process) with Discord enabled
and `[discord] api_url` pointing at a loopback Discord (REST + gateway) and a fake model."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.formatting import fences_balanced
from bot.signoff import SIGN_OFF
from tests.conftest import FAKE_KEY, clean_env, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.fake_discord import FakeDiscord, user_payload

NO_PINGS = {"parse": []}


def all_texts(body: dict[str, Any]) -> str:
    return "\n".join(
        b.get("text", "") for m in body["messages"] for b in m["content"] if isinstance(b, dict)
    )


def test_archbot_run_in_discord(
    tmp_path: Path, fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic
) -> None:
    fake, model = fake_discord, fake_anthropic
    env = clean_env(
        ARCHBOT_DISCORD__ENABLED="true",
        ARCHBOT_DISCORD__API_URL=fake.url,
        DISCORD_TOKEN="test-not-real",
        ANTHROPIC_BASE_URL=model.url,  # type: ignore[attr-defined]
        ANTHROPIC_API_KEY=FAKE_KEY,
        ARCHBOT_STORAGE__PATH=str(tmp_path / "a.db"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: fake.connected, "the gateway connection", proc=proc)
        wait_until(
            lambda: fake.rest("PUT", rf"/applications/{fake.app_id}/commands"),
            "command sync",
            proc=proc,
        )
        (sync,) = fake.rest("PUT", rf"/applications/{fake.app_id}/commands")
        assert sync.body[0]["name"] == "archbot"

        # 1. A mention in #architecture opens a thread on that message; the answer lands in it.
        model.reply_text("Partition by day and symbol.\n\nDone. What are we tackling next?")
        question = "Where should 5 years of tick data live?"
        mention = fake.message(f"<@{fake.bot_id}> {question}", mention_bot=True)
        thread = mention["id"]
        wait_until(lambda: fake.sent_messages(thread), "the answer in the new thread", proc=proc)
        (create,) = fake.rest("POST", rf"/channels/{fake.channel_id}/messages/{thread}/threads")
        assert create.body["name"] == question
        (answer,) = fake.sent_messages(thread)
        assert answer["content"].startswith("Partition by day")
        assert answer["content"].endswith(SIGN_OFF) and answer["content"].count(SIGN_OFF) == 1

        # 2. A follow-up in the thread without a mention, answered with the earlier exchange.
        model.reply_text("ClickHouse or TimescaleDB, measured on your queries.")
        fake.message("What database would you pick?", channel_id=thread)
        wait_until(lambda: len(fake.sent_messages(thread)) == 2, "the follow-up answer", proc=proc)
        history = all_texts(model.message_requests[1].body)
        assert question in history and "Partition by day and symbol." in history
        assert "What database would you pick?" in history

        # 3. Another bot's message is ignored; 4. a DM is answered (and proves 3 was processed).
        bot_user = user_payload("1100000000000000070", "otherbot", bot=True)
        fake.message(f"<@{fake.bot_id}> I am a bot", mention_bot=True, author=bot_user)
        dm = fake.new_id()
        model.reply_text("Happy to help in DMs.")
        fake.message("hi, can we talk here?", channel_id=dm, dm=True)
        wait_until(lambda: fake.sent_messages(dm), "the DM answer", proc=proc)
        assert fake.sent_messages(dm)[0]["content"].endswith(SIGN_OFF)
        assert len(model.message_requests) == 3
        assert all("I am a bot" not in all_texts(r.body) for r in model.message_requests)
        assert len(fake.rest("POST", r"/channels/\d+/messages/\d+/threads")) == 1

        # 5. A 5,000-char answer with a code block, posted after a 429 that is retried.
        code = "\n".join(f"backfill(day={i}, source='exchange', retries=3)" for i in range(90))
        prose = " ".join(["Idempotent backfills make replays safe."] * 25)
        model.reply_text(
            f"{prose}\n\n```python\n{code}\n```\n\n{prose}\n\n@everyone <@&42> heads-up"
        )
        fake.rate_limit("POST", rf"/channels/{thread}/messages")
        fake.message("Write the backfill plan out in full.", channel_id=thread)

        def long_answer_done() -> bool:
            sent = fake.sent_messages(thread)
            return len(sent) > 2 and sent[-1]["content"].endswith(SIGN_OFF)

        wait_until(long_answer_done, "the long answer", proc=proc)
        parts = [m["content"] for m in fake.sent_messages(thread)[2:]]
        assert sum(len(p) for p in parts) >= 5000 and len(parts) >= 3
        assert all(len(p) <= 2000 for p in parts)
        assert all(fences_balanced(p) for p in parts)
        assert sum(p.count(SIGN_OFF) for p in parts) == 1
        assert [c.status for c in fake.rest("POST", rf"/channels/{thread}/messages")].count(
            429
        ) == 1

        # 6. Everything the bot sent pings nobody.
        sent = fake.sent_messages()
        assert len(sent) >= 6
        assert all(m.get("allowed_mentions") == NO_PINGS for m in sent)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _out, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "test-not-real" not in out + err


@dataclass
class Run:
    """An `archbot run` process and what it wrote, once it has stopped."""

    proc: subprocess.Popen[str]
    out: str = ""
    err: str = ""


@contextmanager
def archbot_run(tmp_path: Path, fake: FakeDiscord, model: FakeAnthropic) -> Iterator[Run]:
    """`archbot run` against the loopback Discord, ready; stopped with SIGTERM, must exit 0."""
    env = clean_env(
        ARCHBOT_DISCORD__ENABLED="true",
        ARCHBOT_DISCORD__API_URL=fake.url,
        DISCORD_TOKEN="test-not-real",
        ANTHROPIC_BASE_URL=model.url,  # type: ignore[attr-defined]
        ANTHROPIC_API_KEY=FAKE_KEY,
        ARCHBOT_STORAGE__PATH=str(tmp_path / "a.db"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = Run(proc)
    try:
        wait_until(lambda: fake.connected, "the gateway connection", proc=proc)
        wait_until(
            lambda: fake.rest("PUT", rf"/applications/{fake.app_id}/commands"),
            "command sync",
            proc=proc,
        )
        yield run
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            run.out, run.err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            run.out, run.err = proc.communicate()
    assert proc.returncode == 0, run.err[-3000:]
    assert "test-not-real" not in run.out + run.err


def start_thread(fake: FakeDiscord, model: FakeAnthropic, proc: subprocess.Popen[str]) -> str:
    """Mention the bot in #architecture; return the thread it answered in."""
    model.reply_text("Let's look at it.")
    thread: str = fake.message(f"<@{fake.bot_id}> Our inference got slow", mention_bot=True)["id"]
    wait_until(lambda: fake.sent_messages(thread), "the answer in the new thread", proc=proc)
    return thread


def test_discord_notices_get_no_answer(
    tmp_path: Path, fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic
) -> None:
    fake, model = fake_discord, fake_anthropic
    bob = user_payload("1100000000000000051", "bob")
    foreign = fake.add_thread(fake.channel_id, "bob's thread", bob["id"])
    fake.seed_message(foreign["id"], "an earlier message in bob's thread", bob)
    with archbot_run(tmp_path, fake, model) as run:
        thread = start_thread(fake, model, run.proc)
        # Someone pins the bot's answer: Discord posts a CHANNEL_PINNED_MESSAGE notice.
        pinned = fake.sent_messages(thread)[0]
        fake.message(
            "",
            channel_id=thread,
            fields={
                "type": 6,
                "message_reference": {
                    "type": 0,
                    "channel_id": thread,
                    "message_id": fake.messages[thread][0]["id"],
                    "guild_id": fake.guild_id,
                },
            },
        )
        # Bob adds the bot to his thread (RECIPIENT_ADD names the bot in `mentions`).
        fake.message("", channel_id=foreign["id"], author=bob, mention_bot=True, fields={"type": 1})
        # "bob started a thread" in the channel, and Discord's own system user mentioning the bot.
        fake.message("bob's thread", author=bob, fields={"type": 18})
        system_user = dict(user_payload("1100000000000000060", "Discord"), system=True)
        fake.message(f"<@{fake.bot_id}> a notice", mention_bot=True, author=system_user)
        # A question after them: once it is answered, the notices have been processed.
        model.reply_text("Profile before you tune.")
        fake.message("So where do we start?", channel_id=thread)
        wait_until(lambda: len(fake.sent_messages(thread)) == 2, "the follow-up", proc=run.proc)
        assert pinned["content"] == "Let's look at it.\n\nDone. What are we tackling next?"
        assert len(model.message_requests) == 2
        assert all("a notice" not in all_texts(r.body) for r in model.message_requests)
        assert not fake.sent_messages(foreign["id"]) and not fake.sent_messages(fake.channel_id)
        assert not fake.rest("GET", rf"/channels/{foreign['id']}/messages"), "never read"
        assert len(fake.rest("POST", r"/channels/\d+/messages/\d+/threads")) == 1


def test_a_forward_is_answered_about_its_content(
    tmp_path: Path, fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic
) -> None:
    fake, model = fake_discord, fake_anthropic
    words = "Feature backfill for 2025 took 14 hours on the shared cluster."
    with archbot_run(tmp_path, fake, model) as run:
        thread = start_thread(fake, model, run.proc)
        model.reply_text("Partition the backfill by month.")
        fake.message(
            "",
            channel_id=thread,
            fields={
                "flags": 1 << 14,  # HAS_SNAPSHOT
                "message_reference": {
                    "type": 1,
                    "channel_id": "1100000000000000012",
                    "message_id": "1100000000000000400",
                    "guild_id": fake.guild_id,
                },
                "message_snapshots": [
                    {
                        "message": {
                            "type": 0,
                            "content": words,
                            "embeds": [],
                            "attachments": [
                                {
                                    "id": "1100000000000000401",
                                    "filename": "backfill.log",
                                    "size": 20480,
                                    "url": "https://cdn.discordapp.com/attachments/1/2/backfill.log",
                                    "proxy_url": "https://media.discordapp.net/attachments/1/2/backfill.log",
                                    "content_type": "text/plain; charset=utf-8",
                                }
                            ],
                            "timestamp": "2026-11-30T08:00:00.000000+00:00",
                            "edited_timestamp": None,
                            "flags": 0,
                            "mentions": [],
                            "mention_roles": [],
                            "components": [],
                        }
                    }
                ],
            },
        )
        wait_until(
            lambda: len(fake.sent_messages(thread)) == 2, "the forward's answer", proc=run.proc
        )
        asked = all_texts(model.message_requests[1].body)
        assert words in asked and "backfill.log" in asked
        assert "1100000000000000012/1100000000000000400" in asked, "where it was forwarded from"
        assert fake.sent_messages(thread)[1]["content"].startswith("Partition the backfill")


def test_an_unparsable_interaction_leaves_the_bot_running(
    tmp_path: Path, fake_discord: FakeDiscord, fake_anthropic: FakeAnthropic
) -> None:
    fake, model = fake_discord, fake_anthropic
    with archbot_run(tmp_path, fake, model) as run:
        broken = fake.interaction([{"name": "help", "type": 1, "options": []}], member_flags=False)
        model.reply_text("Still here.")
        dm = fake.new_id()
        fake.message("are you still there?", channel_id=dm, dm=True)
        wait_until(lambda: fake.sent_messages(dm), "the answer after the bad event", proc=run.proc)
        assert run.proc.poll() is None
        assert not fake.rest("POST", r"/interactions/\d+/[^/]+/callback"), "it was skipped"
        assert len(fake.identifies) == 1, "the same session, no reconnect"
    lines = [line for line in run.err.splitlines() if "could not parse" in line]
    assert len(lines) == 1 and "INTERACTION_CREATE" in lines[0], run.err[-3000:]
    assert broken["token"] not in run.err
