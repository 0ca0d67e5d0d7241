"""Acceptance, as a new user tries it: `archbot run` (a real process) with Discord enabled
and `[discord] api_url` pointing at a loopback Discord (REST + gateway) and a fake model."""

from __future__ import annotations

import signal
import subprocess
import sys
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
